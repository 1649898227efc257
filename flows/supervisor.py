"""The `training-supervisor` flow: the training master's loop, for a cloud setup.

`tenantml up` runs the same loop in its own process. In the cloud, the deployment's schedule
starts this flow every minute; a run that finds the lease held by a live supervisor waits
``standby_s`` for it to go stale and otherwise ends, so one supervises and the schedule brings a
replacement within a minute of the holder's death (plus the lease's timeout). A run supervises
for ``run_for_s`` and then hands over, which keeps each flow run's logs a readable size.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tenantml.bootstrap import Connection, fixed_capacity
from tenantml.settings import load_settings
from tenantml.services.supervisor import supervise
from tenantml.services.trainings import supervisor_silence


@flow(name="training-supervisor")
def training_supervisor(run_for_s: float = 3600.0, standby_s: float = 0.0) -> str:
    logger = get_run_logger()
    settings = load_settings()
    connection = Connection(settings, create_schema=False)  # schema changes are `tenantml db upgrade`'s
    connection.require_current_schema()
    holder = f"flow-run:{flow_run.id}"
    give_up = time.monotonic() + standby_s
    while (silence := supervisor_silence(connection.store, stale_after_s=settings.training.supervisor_timeout_s,
                                         holder=holder)) is None:
        if time.monotonic() >= give_up:
            logger.info("another training supervisor is alive; nothing to do")
            return "standing by: another supervisor holds the lease"
        time.sleep(settings.training.watch_interval_s)
    logger.info("supervising: %s", silence)
    stop_at = time.monotonic() + run_for_s
    stopping = threading.Event()
    with ThreadPoolExecutor(2, thread_name_prefix="finalize") as finalizing:
        supervisor = connection.supervisor(fixed_capacity(settings), finalizing)
        supervise(supervisor, holder, lambda wait: stopping.wait(wait) or time.monotonic() > stop_at,
                  settings.training.watch_interval_s, settings.training.supervisor_timeout_s)
    return f"supervised for {run_for_s:g} s"
