"""The `training-reconciler` flow: start a new training master for every request whose master died."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from tenantml.bootstrap import Connection
from tenantml.settings import load_settings
from tenantml.services.reconcile import reconcile


@flow(name="training-reconciler")
def training_reconciler(stale_after_s: float = 15.0) -> list[str]:
    connection = Connection(load_settings())
    restarted = reconcile(
        connection.store,
        connection.start_master,
        datetime.now(UTC),
        stale_after_s,
    )
    if restarted:
        get_run_logger().warning("started new masters for %s", ", ".join(restarted))
    return restarted
