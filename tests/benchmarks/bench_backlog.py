"""Speed under a backlog on the live platform (issue #8): the steps per second of one running
training with 0, 50 and 200 requests queued, on the embedded SQLite default and on PostgreSQL; the
Prefect server's errors over each run and the attempts that ended with a heartbeat lost.

The queued requests belong to tenants held at a running limit of 0 (the platform's default here),
so they stay pending and the supervisor reads them at every tick; the measured training's tenant
has a limit of 1 of its own.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tenantml.domain.request import AttemptEnd, TrainingRequest
from tenantml.services.trainings import cancel_request
from tenantml.settings import Settings, load_settings
from tests.benchmarks.live import QUICK, all_done, median, running_platform
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import classification_frame, start_platform
from tests.support.postgres import temporary_database

LEVELS = (0, 50, 200)
REPEATS = int(os.environ.get("BENCH_BACKLOG_REPEATS", "1" if QUICK else "2"))
EPOCHS = int(os.environ.get("BENCH_BACKLOG_EPOCHS", "30"))
HELD_TENANTS = 10
SERVER = "postgres@127.0.0.1:5432"


@dataclass
class Level:
    steps_per_s: list[float] = field(default_factory=list)
    server_errors: int = 0
    heartbeat_lost: int = 0


def steps_per_s(request: TrainingRequest) -> float:
    """Steps over the time from the first attempt's training code running to the last attempt's end."""
    first, last = request.attempts[0], request.attempts[-1]
    assert first.running_at and last.ended_at, f"request {request.id} did not run to its end: {request.status}"
    return request.step / (last.ended_at - first.running_at).total_seconds()


def server_errors(log: Path, offset: int) -> tuple[int, int]:
    """ERROR lines in the Prefect server's log after byte ``offset``, and the new offset."""
    if not log.exists():
        return 0, offset
    with log.open("rb") as text:
        text.seek(offset)
        chunk = text.read()
    return sum(1 for line in chunk.splitlines() if b"| ERROR" in line), offset + len(chunk)


def measure(settings: Settings) -> dict[int, Level]:
    embedded, platform = start_platform(settings)
    with running_platform(embedded):
        runner = platform.new_tenant()
        platform.connection.store.set_running_limit(runner, 1)
        data = platform.dataset(runner, classification_frame())
        held = [platform.new_tenant() for _ in range(HELD_TENANTS)]
        held_data = {tenant: platform.dataset(tenant, classification_frame(rows=2_000)) for tenant in held}
        all_done(platform, [platform.submit(runner, data, model="warmup", epochs=2).request_id], 300)
        log = Path(settings.home) / "logs" / "prefect-server.log"
        _, offset = server_errors(log, 0)
        results = {level: Level() for level in LEVELS}
        for cycle in range(REPEATS):  # the levels in turn, then back to none: drift in the machine's load hits each
            held_ids: list[str] = []
            for level in LEVELS:
                for n in range(len(held_ids), level):
                    tenant = held[n % HELD_TENANTS]
                    held_ids.append(platform.submit(tenant, held_data[tenant], model=f"held{cycle}-{n}",
                                                    epochs=1).request_id)
                result = results[level]
                admission = platform.submit(runner, data, model=f"run{level}-{cycle}", epochs=EPOCHS)
                (done,) = all_done(platform, [admission.request_id], 60 + 4 * EPOCHS)
                assert done.status.value == "completed", f"{done.id}: {done.status} {done.reason}"
                result.steps_per_s.append(steps_per_s(done))
                result.heartbeat_lost += sum(1 for a in done.attempts if a.end is AttemptEnd.HEARTBEAT_LOST)
                errors, offset = server_errors(log, offset)
                result.server_errors += errors
                print(f"{settings.database_url.split(':')[0]} cycle {cycle}, {level} queued: {result}", flush=True)
            statuses = {platform.request(request_id).status.value for request_id in held_ids}
            assert statuses <= {"pending"}, f"held requests should stay pending, found {statuses}"
            for request_id in held_ids:
                cancel_request(platform.connection.store, request_id, None, datetime.now(UTC))
            all_done(platform, held_ids, 300)
            _, offset = server_errors(log, offset)  # the cancellations' clean-up is not a level's
    return results


@contextmanager
def postgres_settings(home: Path) -> Iterator[Settings]:
    with temporary_database("tenantml_bench_prefect") as prefect_db, temporary_database("tenantml_bench") as meta_db:
        yield load_settings(
            home=home, database={"url": f"postgresql+psycopg://{SERVER}/{meta_db}"},
            prefect={"database_url": f"postgresql+asyncpg://{SERVER}/{prefect_db}", "small_workers": 1,
                     "large_workers": 0},
            fleet={"provisioner": False}, quotas={"max_running": 0},
        )


def rows_for(label: str, results: dict[int, Level]) -> list[list[str]]:
    alone = median(results[0].steps_per_s)
    rows = []
    for level in LEVELS[1:]:
        rows.append(row(f"{label}: steps/s with {level} queued", median(results[level].steps_per_s), "steps/s",
                        "0 queued, same run", alone, True))
    errors = sum(r.server_errors for r in results.values())
    lost = sum(r.heartbeat_lost for r in results.values())
    rows.append(row(f"{label}: Prefect server ERROR lines, all levels", errors, "", "target", 0, False))
    rows.append(row(f"{label}: attempts ended heartbeat_lost", lost, "", "target", 0, False))
    return rows


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-backlog-"))
    started = time.monotonic()
    sqlite = measure(load_settings(home=home / "sqlite", prefect={"small_workers": 1, "large_workers": 0},
                                   fleet={"provisioner": False}, quotas={"max_running": 0}))
    print(f"sqlite: {time.monotonic() - started:.0f} s", flush=True)
    with postgres_settings(home / "postgres") as settings:
        postgres = measure(settings)
    rows = rows_for("SQLite", sqlite) + rows_for("PostgreSQL", postgres)
    shown = "; ".join(f"{label} {level}: {', '.join(f'{v:.0f}' for v in found[level].steps_per_s)}"
                      for label, found in (("SQLite", sqlite), ("PostgreSQL", postgres)) for level in LEVELS)
    load = os.getloadavg()[1]
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_backlog`: one sgd_classifier training at a time ({EPOCHS} epochs of "
        f"classification_frame) on an embedded platform with 1 small worker, while 0, 50 and then 200 requests of "
        f"{HELD_TENANTS} other tenants wait, held by a running limit of 0; then the backlog is cancelled and the "
        f"levels run again, {REPEATS} times in all (median shown), so that drift in the machine's load reaches "
        "every level. Steps/s: the request's steps over the time from its training code running to its end "
        "(heartbeats every 1 s and a checkpoint every 5 s included). SQLite: the embedded default (metadata and "
        "Prefect server on SQLite files); PostgreSQL: both on 127.0.0.1:5432. Server errors: lines at level ERROR "
        "in the Prefect server's log while the levels' trainings ran. The machine is shared (load average "
        f"{load:.1f} on {os.cpu_count()} cores over the last 5 minutes at the end): the spread between runs is "
        f"mostly that load. Every run: {shown} steps/s. Not shown: backlogs that *run* (many heartbeats at once), "
        "or several workers training at the same time."
    )
    write_section("backlog", "Training speed under a backlog", body)
    print(body)


if __name__ == "__main__":
    main()
