"""Fairness on the live platform (issue #8): a small tenant's wait to start behind another tenant's
20-training backlog, with the fair-share scheduler (with and without preemption) and with FIFO.

FIFO is measured on the same platform, same workers and same workload: for that run the
supervisor's plan is replaced by one that starts the oldest queued requests first into the free
slots and never preempts (the order of Prefect's work queue, and of tenantml before the scheduler).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from unittest import mock

import tenantml.services.supervisor as supervisor_module
from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.domain.scheduling import Plan, Policy, Running, Start, Waiting
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.settings import SchedulerSettings, load_settings
from tests.benchmarks.live import QUICK, all_done, median, running_platform, seconds_to_run
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import RunningPlatform, classification_frame, start_platform
from tests.support.waiting import wait_for

BACKLOG = int(os.environ.get("BENCH_SCHEDULER_BACKLOG", "8" if QUICK else "20"))
SMALL = 2  # the small tenant's requests
EPOCHS = int(os.environ.get("BENCH_SCHEDULER_EPOCHS", "20"))  # about 10 s alone on 2 cores
PREEMPT_AFTER_S = float(os.environ.get("BENCH_SCHEDULER_PREEMPT_AFTER_S", "5"))
WORKERS = 2
FIFO = "FIFO (oldest first), same platform"


def fifo_plan(waiting: Iterable[Waiting], running: Iterable[Running], free: Mapping[str, int], now: datetime,
              policy: Policy | None = None, usage: Mapping[str, float] | None = None) -> Plan:
    """The peer: the oldest queued requests first into the free slots, running limits kept, no preemption."""
    policy = policy or Policy()
    totals: dict[str, int] = {}
    for attempt in running:
        totals[attempt.tenant] = totals.get(attempt.tenant, 0) + 1
    left, starts = dict(free), []
    for item in sorted(waiting, key=attrgetter("queued_at", "request_id")):
        if left.get(item.worker_class, 0) > 0 and policy.allows(item.tenant, totals.get(item.tenant, 0)):
            starts.append(Start(item.request_id, item.tenant, item.worker_class))
            left[item.worker_class] -= 1
            totals[item.tenant] = totals.get(item.tenant, 0) + 1
    return Plan(tuple(starts))


@dataclass
class Outcome:
    big: list[TrainingRequest]
    small: list[TrainingRequest]

    def waits(self, requests: list[TrainingRequest]) -> list[float]:
        return [seconds_to_run(r) for r in requests]

    @property
    def everyone(self) -> list[TrainingRequest]:
        return self.big + self.small

    @property
    def run_s(self) -> float:
        """The median time from a training's code running to its end, over the single-attempt ones."""
        return median([(a.ended_at - a.running_at).total_seconds() for r in self.everyone
                       if len(r.attempts) == 1 and (a := r.attempts[0]).ended_at and a.running_at])

    @property
    def makespan_s(self) -> float:
        first = min(r.created_at for r in self.everyone)
        return max((r.finished_at - first).total_seconds() for r in self.everyone if r.finished_at)

    @property
    def preempted(self) -> list[TrainingRequest]:
        return [r for r in self.everyone if any(a.end is AttemptEnd.PREEMPTED for a in r.attempts)]

    @property
    def preemptions(self) -> int:
        return sum(1 for r in self.everyone for a in r.attempts if a.end is AttemptEnd.PREEMPTED)

    @property
    def steps_redone(self) -> int:
        return sum(r.steps_redone(a) for r in self.everyone for a in r.attempts[1:])

    @property
    def completed(self) -> int:
        return sum(1 for r in self.everyone if r.status is RequestStatus.COMPLETED)


def measure(embedded: EmbeddedPlatform, platform: RunningPlatform, scheduler: SchedulerSettings,
            fifo: bool) -> Outcome:
    """One run of the workload under ``scheduler`` (or FIFO), with fresh tenants; everything ends."""
    embedded.stop_supervisor()
    embedded.settings = embedded.settings.model_copy(update={"scheduler": scheduler})
    with ExitStack() as patched:
        if fifo:  # the supervisor looks plan up by name at every tick
            patched.enter_context(mock.patch.object(supervisor_module, "plan", fifo_plan))
        embedded.start_supervisor()
        try:
            return _workload(platform)
        finally:
            embedded.stop_supervisor()


def _workload(platform: RunningPlatform) -> Outcome:
    """Tenant A's backlog; once it holds every worker, tenant B's requests; all of them to their end."""
    big, small = platform.new_tenant(), platform.new_tenant()
    frame = classification_frame()
    big_data, small_data = platform.dataset(big, frame), platform.dataset(small, frame)
    backlog = [platform.submit(big, big_data, model=f"a{n}", epochs=EPOCHS).request_id for n in range(BACKLOG)]
    wait_for(lambda: sum(1 for r in backlog[:WORKERS] if (a := platform.request(r).current_attempt)
                         and a.running_at) == WORKERS, 120, "the backlog to hold every worker")
    late = [platform.submit(small, small_data, model=f"b{n}", epochs=EPOCHS).request_id for n in range(SMALL)]
    timeout = 60 + 4 * EPOCHS * (BACKLOG + SMALL)
    return Outcome(all_done(platform, backlog, timeout), all_done(platform, late, timeout))


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-scheduler-"))
    settings = load_settings(home=home, prefect={"small_workers": WORKERS, "large_workers": 0},
                             fleet={"provisioner": False})
    embedded, platform = start_platform(settings)
    runs = {
        "fifo": SchedulerSettings(preemption=False),
        "fair": SchedulerSettings(preemption=False),
        "preempt": SchedulerSettings(preemption=True, preempt_after_s=PREEMPT_AFTER_S),
    }
    outcomes: dict[str, Outcome] = {}
    with running_platform(embedded):
        for name, scheduler in runs.items():
            started = time.monotonic()
            outcomes[name] = measure(embedded, platform, scheduler, fifo=name == "fifo")
            print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
    fifo, fair, preempt = outcomes["fifo"], outcomes["fair"], outcomes["preempt"]
    with_preemption = f"fair share, preemption after {PREEMPT_AFTER_S:g} s"
    rows = []
    for label, ours in ((with_preemption, preempt), ("fair share, no preemption", fair)):
        small, peer = ours.waits(ours.small), fifo.waits(fifo.small)
        rows += [
            row(f"{label}: small tenant's wait to start, median", median(small), "s", FIFO, median(peer), False),
            row(f"{label}: small tenant's wait to start, max", max(small), "s", FIFO, max(peer), False),
        ]
    for label, ours in ((with_preemption, preempt), ("fair share, no preemption", fair)):
        big, peer = ours.waits(ours.big), fifo.waits(fifo.big)
        rows += [
            row(f"{label}: big tenant's wait to start, median", median(big), "s", FIFO, median(peer), False),
            row(f"{label}: big tenant's wait to start, max", max(big), "s", FIFO, max(peer), False),
            row(f"{label}: makespan of all {BACKLOG + SMALL}", ours.makespan_s, "s", FIFO, fifo.makespan_s, False),
            row(f"{label}: one training's run time, median", ours.run_s, "s", FIFO, fifo.run_s, False),
        ]
    load = os.getloadavg()[1]
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_scheduler`: on one embedded platform with {WORKERS} small process "
        f"workers (provisioner off), tenant A queues {BACKLOG} sgd_classifier trainings ({EPOCHS} epochs of "
        f"classification_frame), and once A holds both workers, "
        f"tenant B queues {SMALL}. A wait is the first attempt's running_at minus the request's created_at. The "
        f"three runs use the same platform, fresh tenants, and the same workload in turn. Preemption after "
        f"{PREEMPT_AFTER_S:g} s (not the default 30 s: that is meant for trainings of minutes; with ~10 s trainings "
        f"a slot frees before 30 s and preemption would never fire). FIFO: for its run the supervisor's plan "
        "(tenantml.domain.scheduling.plan) is replaced by one that starts the oldest queued requests first into "
        "the free slots and never preempts, as Prefect's work queue orders flow runs. "
        f"The machine is shared (load average {load:.1f} on {os.cpu_count()} cores over the last 5 minutes at the end): a training's run time, shown per run, moves between runs, and the waits with it; compare a wait with its run's training time. Preemptions: {preempt.preemptions} ({len(preempt.preempted)} trainings), all "
        f"{preempt.completed} of {len(preempt.everyone)} requests completed, {preempt.steps_redone} steps redone "
        f"(from the attempt history); without preemption {fair.completed}/{len(fair.everyone)} completed, FIFO "
        f"{fifo.completed}/{len(fifo.everyone)}. What it does not show: more tenants, weights, or more workers "
        "than this machine has (see the simulation below)."
    )
    write_section("scheduler", "Fairness on the live platform", body)
    print(body)


if __name__ == "__main__":
    main()
