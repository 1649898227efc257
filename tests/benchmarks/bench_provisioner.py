"""The provisioner on the live platform (issue #8): how fast a backlog gets a worker, the makespan of
20 queued trainings against 1 and 2 fixed workers, the idle worker-seconds, and the scale-down.

The three fleets run on one platform in turn, each with a fresh tenant and the same workload: the
provisioner's loop as `tenantml up` starts it (small min 0, max 2), then the same loop with the
provisioner off (min = max = the fixed count, as with TENANTML_FLEET__PROVISIONER=false, which
still replaces a worker that dies), at 2 workers and then at 1.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tenantml.adapters.fleet_records import FleetRecords
from tenantml.domain.request import WorkerClass
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.fleet import FleetLoop, policies
from tenantml.services.provisioner import Provisioner
from tenantml.settings import load_settings
from tests.benchmarks.live import QUICK, all_done, running_platform
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import RunningPlatform, classification_frame, start_platform
from tests.support.waiting import wait_for

TRAININGS = int(os.environ.get("BENCH_PROVISIONER_TRAININGS", "8" if QUICK else "20"))
EPOCHS = int(os.environ.get("BENCH_PROVISIONER_EPOCHS", "10"))
MAXIMUM = 2
COOLDOWN_S = 10.0
TAIL_S = 30.0  # idle worker-seconds are counted until this long after the last training ended
SAMPLE_S = 0.25
SMALL = WorkerClass.SMALL.value


@dataclass
class Fleet:
    """The small workers alive and the trainings working, sampled every SAMPLE_S."""

    embedded: EmbeddedPlatform
    platform: RunningPlatform
    tenant: str
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (time.time(), alive, busy)
    _stop: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> int:
        assert self.embedded.workers is not None
        return sum(1 for s in self.embedded.workers.services_of(SMALL) if s.alive())

    def sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            busy = sum(1 for r in self.platform.connection.store.list_requests(tenant=self.tenant)
                       if r.status.is_working)
            self.samples.append((time.time(), self.alive(), busy))

    def idle_worker_seconds(self, start: float, end: float) -> float:
        inside = [s for s in self.samples if start <= s[0] <= end]
        return sum((b[0] - a[0]) * max(0, a[1] - a[2]) for a, b in zip(inside, inside[1:]))


def _workers_polling(api_url: str, pool: str, since: datetime) -> list[datetime]:
    """When the pool's small workers that heartbeat after ``since`` did so; through Prefect's client,
    which sends the platform's auth string (the server refuses anonymous callers)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(pool)
    return sorted(w.last_heartbeat_time for w in workers
                  if w.name.startswith(f"{SMALL}-") and w.last_heartbeat_time and w.last_heartbeat_time >= since)


def run(embedded: EmbeddedPlatform, platform: RunningPlatform, label: str) -> dict[str, float]:
    """The workload on the fleet as it is now; the fleet is sampled until TAIL_S after it ended."""
    tenant = platform.new_tenant()
    data = platform.dataset(tenant, classification_frame())
    fleet = Fleet(embedded, platform, tenant)
    sampler = threading.Thread(target=fleet.sample, name="fleet-sampler", daemon=True)
    sampler.start()
    pool = platform.settings.prefect.training_pool
    since = datetime.now(UTC)
    started = time.time()
    ids = [platform.submit(tenant, data, model=f"m{n}", epochs=EPOCHS).request_id for n in range(TRAININGS)]
    polling = wait_for(lambda: _workers_polling(platform.prefect_api_url, pool, since), 120,
                       "a small worker polling", every_s=0.2)
    done = all_done(platform, ids, 60 + 10 * EPOCHS * TRAININGS)
    ended = max(r.finished_at.timestamp() for r in done if r.finished_at)
    scaled_down = None
    if label == "provisioner":
        wait_for(lambda: fleet.alive() == 0, 60 + COOLDOWN_S * 3, "the provisioner to stop every small worker",
                 every_s=0.2)
        scaled_down = time.time() - ended
    wait_for(lambda: time.time() >= ended + TAIL_S, TAIL_S + 10, "the tail of the run", every_s=0.5)
    fleet._stop.set()
    sampler.join(5)
    first_run = min(r.attempts[0].running_at.timestamp() for r in done if r.attempts and r.attempts[0].running_at)
    return {
        "reaction_s": (polling[0] - since).total_seconds(),
        "first_running_s": first_run - started,
        "makespan_s": ended - started,
        "idle_busy_s": fleet.idle_worker_seconds(started, ended),
        "idle_total_s": fleet.idle_worker_seconds(started, ended + TAIL_S),
        "scale_down_s": scaled_down if scaled_down is not None else float("nan"),
        "completed": sum(1 for r in done if r.status.value == "completed"),
    }


def pin(embedded: EmbeddedPlatform, platform: RunningPlatform, count: int) -> None:
    """Replace the platform's provisioner loop by the provisioner-off loop at ``count`` small workers."""
    assert embedded.workers is not None and embedded._fleet is not None
    embedded._fleet.stop()
    settings = platform.settings
    loop = FleetLoop(embedded.workers,
                     Provisioner(embedded.workers, platform.connection.store,
                                 policies(settings, fixed={SMALL: count, WorkerClass.LARGE.value: 0})),
                     FleetRecords(platform.connection.store.engine), platform.prefect_api_url,
                     settings.fleet.interval_s, provisioned=False)
    embedded._fleet = loop.start()  # stopped by embedded.stop() like the one it replaces
    since = datetime.now(UTC)
    pool = settings.prefect.training_pool
    wait_for(lambda: embedded.workers is not None and len(embedded.workers.services_of(SMALL)) == count
             and len(_workers_polling(platform.prefect_api_url, pool, since)) >= count,
             120, f"{count} small workers polling", every_s=0.5)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-provisioner-"))
    settings = load_settings(home=home, prefect={"small_workers": MAXIMUM, "large_workers": 0},
                             fleet={"provisioner": True, "small_min": 0, "small_max": MAXIMUM, "large_min": 0,
                                    "large_max": 0, "cooldown_s": COOLDOWN_S})
    embedded, platform = start_platform(settings)
    results = {}
    with running_platform(embedded):
        for label, fixed in (("provisioner", None), ("fixed-2", 2), ("fixed-1", 1)):
            if fixed is not None:
                pin(embedded, platform, fixed)
            started = time.monotonic()
            results[label] = run(embedded, platform, label)
            print(f"{label}: {results[label]} ({time.monotonic() - started:.0f} s)", flush=True)
    ours, two, one = results["provisioner"], results["fixed-2"], results["fixed-1"]
    fixed_max, fixed_one = f"{MAXIMUM} fixed workers", "1 fixed worker"
    rows = [
        row("backlog -> first new worker polling", ours["reaction_s"], "s", "KEDA's default polling interval",
            30.0, False),
        row("backlog -> first training running", ours["first_running_s"], "s", f"{fixed_max} (up already)",
            two["first_running_s"], False),
        row(f"makespan of {TRAININGS} queued trainings", ours["makespan_s"], "s", fixed_max, two["makespan_s"], False),
        row(f"makespan of {TRAININGS} queued trainings", ours["makespan_s"], "s", fixed_one, one["makespan_s"], False),
        row("idle worker-seconds, backlog to last end", ours["idle_busy_s"], "s", fixed_max, two["idle_busy_s"], False),
        row(f"idle worker-seconds, backlog to {TAIL_S:.0f} s after the last end", ours["idle_total_s"], "s",
            fixed_max, two["idle_total_s"], False),
        row("last training ended -> no small worker left", ours["scale_down_s"], "s", "fixed workers: never", None,
            False),
    ]
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_provisioner`: {TRAININGS} sgd_classifier trainings ({EPOCHS} epochs "
        "of classification_frame) queued at once by one tenant, on one embedded platform in turn: the provisioner "
        f"(small min 0, max {MAXIMUM}, cooldown {COOLDOWN_S:g} s, a pass every {settings.fleet.interval_s:g} s), then "
        "the provisioner-off loop pinned at 2 and at 1 small workers (started and polling before the backlog "
        "appears). 'Polling': the worker's first heartbeat in the Prefect API's work pool workers, sent as it "
        "starts its polling loop. Idle worker-seconds: small worker processes alive minus trainings working, sampled "
        f"every {SAMPLE_S:g} s; a worker starting up counts as idle. Completed: {ours['completed']:.0f}, "
        f"{two['completed']:.0f}, {one['completed']:.0f} of {TRAININGS}. The machine is shared (load average {os.getloadavg()[1]:.1f} on {os.cpu_count()} cores over the last 5 "
        "minutes at the end): where the makespans of 1 and 2 fixed workers are close, the busy cores, not the "
        "workers, bounded the CPU-bound trainings. KEDA's figure is its documented default "
        "pollingInterval, not a measurement. Not shown: a large-class backlog, many tenants, or start-up on a "
        "slower machine (the reaction is mostly a Prefect worker's start)."
    )
    write_section("provisioner", "The provisioner against fixed workers", body)
    print(body)


if __name__ == "__main__":
    main()
