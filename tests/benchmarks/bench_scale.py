"""Scale on the live platform (issue #8): 500 queued requests. How fast they are admitted, what they
cost the platform in memory and processes against the same platform idle, and the time of one
supervision tick over them.

Nothing may start: the platform's default running limit is 0 (TENANTML_QUOTAS__MAX_RUNNING=0), so
every request stays pending in the metadata, as a backlog behind busy workers would.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tenantml.bootstrap import Connection
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.services.supervisor import TrainingSupervisor
from tenantml.settings import load_settings
from tests.benchmarks.live import QUICK, median, percentile, platform_memory, running_platform
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import classification_frame, start_platform
from tests.support.waiting import wait_for

REQUESTS = int(os.environ.get("BENCH_SCALE_REQUESTS", "100" if QUICK else "500"))
TENANTS = 10
TICKS = 20
SETTLE_S = 10.0  # the platform's own supervisor ticks over the backlog this long before memory is read
IDLE = "the same platform idle"


def memory(embedded: EmbeddedPlatform, samples: int = 3) -> tuple[float, float, int]:
    """Median RSS MB, PSS MB and the process count over a few samples a second apart."""
    found = []
    for n in range(samples):
        if n:
            time.sleep(1.0)  # a spaced sample, not a wait for a condition
        found.append(platform_memory(embedded))
    return median([f[0] for f in found]), median([f[1] for f in found]), int(median([f[2] for f in found]))


def tick_seconds(supervisor: TrainingSupervisor) -> list[float]:
    supervisor.tick()  # the first tick notes every request; the steady state is what repeats
    return [supervisor.tick().seconds for _ in range(TICKS)]


def pause(seconds: float) -> None:
    until = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() >= until, seconds + 5, f"{seconds:g} s of the platform running", every_s=0.5)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-scale-"))
    settings = load_settings(home=home, prefect={"small_workers": 1, "large_workers": 0},
                             fleet={"provisioner": False}, quotas={"max_running": 0})
    embedded, platform = start_platform(settings)
    with running_platform(embedded):
        assert embedded.workers is not None
        # A second supervisor on the same database, ticked by hand and never holding the lease: it
        # reads what the platform's supervisor reads; its on_change would publish to Prefect again.
        supervisor = Connection(platform.settings).supervisor(embedded.workers)
        supervisor.on_change = lambda request: None
        pause(SETTLE_S)
        idle_memory, idle_ticks = memory(embedded), tick_seconds(supervisor)
        tenants = [platform.new_tenant() for _ in range(TENANTS)]
        data = {tenant: platform.dataset(tenant, classification_frame(rows=2_000)) for tenant in tenants}
        started = time.monotonic()
        ids = [platform.submit(tenants[n % TENANTS], data[tenants[n % TENANTS]], model=f"m{n}", epochs=1).request_id
               for n in range(REQUESTS)]
        submitted_s = time.monotonic() - started
        pause(SETTLE_S)
        loaded_memory, loaded_ticks = memory(embedded), tick_seconds(supervisor)
        statuses = {platform.request(request_id).status.value for request_id in ids}
    assert statuses == {"pending"}, f"the backlog should all be pending, found {statuses}"
    rate = REQUESTS / submitted_s
    interval_ms = settings.training.watch_interval_s * 1e3
    load = os.getloadavg()[1]
    rows = [
        row(f"submission rate, {REQUESTS} requests in a row", rate, "req/s", "-", None, True),
        row(f"platform RSS with {REQUESTS} queued", loaded_memory[0], "MB", IDLE, idle_memory[0], False),
        row(f"platform PSS with {REQUESTS} queued", loaded_memory[1], "MB", IDLE, idle_memory[1], False),
        row(f"PSS added by {REQUESTS} queued requests", loaded_memory[1] - idle_memory[1], "MB", "target", 300.0,
            False),
        row(f"platform processes with {REQUESTS} queued", loaded_memory[2], "", IDLE, idle_memory[2], False),
        row(f"supervisor tick with {REQUESTS} queued, median", median(loaded_ticks) * 1e3, "ms", IDLE,
            median(idle_ticks) * 1e3, False),
        row(f"supervisor tick with {REQUESTS} queued, p95", percentile(loaded_ticks, 95) * 1e3, "ms", IDLE,
            percentile(idle_ticks, 95) * 1e3, False),
        row(f"supervisor tick with {REQUESTS} queued, max", max(loaded_ticks) * 1e3, "ms", "the tick interval",
            interval_ms, False),
    ]
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_scale`: {REQUESTS} sgd_classifier requests submitted one after the "
        f"other through the admission service (tests.support.platform.submit: dataset checks, quota, insert) by "
        f"{TENANTS} tenants, on an embedded platform with 1 small worker and a default running limit of 0, so all "
        "stay pending. Memory: RSS and PSS summed over this process (the supervisor and provisioner threads run "
        "in it) and every process of the platform with its descendants (Prefect and MLflow servers, fork server, "
        f"workers), the median of 3 samples, {SETTLE_S:g} s after the last submission. Tick: "
        "TrainingSupervisor.tick() of a second supervisor on the same database, timed by the tick itself, "
        f"{TICKS} ticks after a first one; it reads every supervised request with its attempts, the running limits "
        "and recent usage, and plans (no start is allowed). The platform's own supervisor ticks every "
        f"{settings.training.watch_interval_s:g} s meanwhile. Before commit d0415c0 each queued request held a "
        f"master flow run in a process of its own (about 70 MB each). The machine is shared (load average {load:.1f} on {os.cpu_count()} cores over the last 5 minutes at the end), which inflates the tick times. Not shown: the tick with many requests "
        "*running* (one Prefect read of all their states per tick), or a database other than SQLite."
    )
    write_section("scale", "500 queued requests", body)
    print(body)


if __name__ == "__main__":
    main()
