"""Draining a backlog on the live platform (issue #11): many short trainings of several tenants,
all submitted at once, on 2 small workers; once with every store on SQLite (the embedded default)
and once with every store on PostgreSQL (Prefect's, MLflow's and the training metadata, each in a
database of its own), in the same run.

Measured: the makespan (first submission to the last request finalized), the workers' utilisation
(the attempts' running time, from their training code starting to their end, over workers times
makespan), the Prefect server's ERROR lines (and among them "database is locked"), the attempts
that did not end as completed, and the dispatch p95 (an attempt started by the supervisor until its
training code runs) beside the wait p95 (submitted until running, queueing included).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tenantml.domain.request import AttemptEnd, TrainingRequest
from tenantml.settings import Settings, load_settings
from tests.benchmarks.live import QUICK, all_done, percentile, running_platform, seconds_to_run
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import classification_frame, start_platform
from tests.support.postgres import postgres_stores

TRAININGS = int(os.environ.get("BENCH_DRAIN_TRAININGS", "20" if QUICK else "100"))
TENANTS = int(os.environ.get("BENCH_DRAIN_TENANTS", "10"))
EPOCHS = int(os.environ.get("BENCH_DRAIN_EPOCHS", "20"))
ROWS = 5_000
WORKERS = 2
UTILISATION_TARGET = 0.8


@dataclass(frozen=True)
class Drain:
    makespan_s: float
    utilisation: float
    server_errors: int
    locked: int
    failed_attempts: int
    failed_requests: int
    dispatch_p95_s: float
    wait_p95_s: float
    training_p50_s: float


def _running_s(request: TrainingRequest) -> float:
    return sum((a.ended_at - a.running_at).total_seconds() for a in request.attempts if a.running_at and a.ended_at)


def _server_log(home: Path) -> tuple[int, int]:
    """ERROR lines in the Prefect server's log, and lines saying "database is locked"."""
    log = home / "logs" / "prefect-server.log"
    text = log.read_bytes() if log.exists() else b""
    lines = text.splitlines()
    return sum(1 for line in lines if b"| ERROR" in line), sum(1 for line in lines if b"database is locked" in line)


def measure(settings: Settings) -> Drain:
    embedded, platform = start_platform(settings)
    with running_platform(embedded):
        tenants = [platform.new_tenant() for _ in range(TENANTS)]
        data = {tenant: platform.dataset(tenant, classification_frame(rows=ROWS, seed=n))
                for n, tenant in enumerate(tenants)}
        all_done(platform, [platform.submit(tenants[0], data[tenants[0]], model="warmup", epochs=1).request_id], 300)
        errors_before, locked_before = _server_log(settings.home)
        started = time.time()
        ids = [platform.submit(tenants[n % TENANTS], data[tenants[n % TENANTS]], model=f"drain-{n}",
                               epochs=EPOCHS).request_id for n in range(TRAININGS)]
        done = all_done(platform, ids, 120 + 20 * TRAININGS)
        finished = max(r.finalized_at for r in done if r.finalized_at).timestamp()
        errors, locked = _server_log(settings.home)
    bad = [r for r in done if r.status.value != "completed"]
    if bad:  # counted, not fatal: a drain on a machine this loaded may lose one to its attempt budget
        print(f"{len(bad)} requests did not complete: {[(r.id, r.status, r.reason) for r in bad[:3]]}", flush=True)
    makespan = finished - started
    attempts = [a for r in done for a in r.attempts]
    dispatch = [(a.running_at - a.started_at).total_seconds() for a in attempts if a.running_at]
    return Drain(
        makespan_s=makespan,
        utilisation=sum(_running_s(r) for r in done) / (WORKERS * makespan),
        server_errors=errors - errors_before,
        locked=locked - locked_before,
        failed_attempts=sum(1 for a in attempts if a.end is not AttemptEnd.COMPLETED),
        failed_requests=len(bad),
        dispatch_p95_s=percentile(dispatch, 95),
        wait_p95_s=percentile([seconds_to_run(r) for r in done], 95),
        training_p50_s=percentile([_running_s(r) for r in done], 50),
    )


def _settings(home: Path, **sections: dict[str, str]) -> Settings:
    return load_settings(
        home=home, database=sections.get("database", {}), mlflow=sections.get("mlflow", {}),
        prefect={**sections.get("prefect", {}), "small_workers": WORKERS, "large_workers": 0},
        fleet={"provisioner": False},
    )


def rows_for(found: Drain, peer: Drain) -> list[list[str]]:
    """PostgreSQL's values, SQLite's beside them as the peer."""
    metrics: list[tuple[str, Callable[[Drain], float], str, bool]] = [
        ("makespan", lambda d: d.makespan_s, "s", False),
        ("worker utilisation (running / workers x makespan)", lambda d: 100 * d.utilisation, "%", True),
        ("Prefect server ERROR lines", lambda d: d.server_errors, "", False),
        ("of them 'database is locked'", lambda d: d.locked, "", False),
        ("attempts not completed (lost, crashed, retried)", lambda d: d.failed_attempts, "", False),
        ("requests not completed", lambda d: d.failed_requests, "", False),
        ("dispatch p95 (attempt started -> training code running)", lambda d: d.dispatch_p95_s, "s", False),
        ("wait p95 (submitted -> running, queueing included)", lambda d: d.wait_p95_s, "s", False),
    ]
    return [row(name, value(found), unit, "SQLite, same run", value(peer), better)
            for name, value, unit, better in metrics]


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-drain-"))
    loads = [os.getloadavg()[1]]
    sqlite = measure(_settings(home / "sqlite"))
    loads.append(os.getloadavg()[1])
    print(f"sqlite: {sqlite}", flush=True)
    with postgres_stores("tenantml_bench_drain", separate_auth=False) as stores:
        postgres = measure(_settings(home / "postgres", **stores.sections()))
    loads.append(os.getloadavg()[1])
    print(f"postgres: {postgres}", flush=True)
    met = postgres.utilisation >= UTILISATION_TARGET and postgres.server_errors == 0
    body = table(rows_for(postgres, sqlite)) + (
        f"\n\nValues: all stores on PostgreSQL; peer: all on SQLite. `python -m tests.benchmarks bench_drain`: {TRAININGS} sgd_classifier trainings"
        f"{'' if TRAININGS == 100 else ' (BENCH_DRAIN_TRAININGS; make bench drains 100)'} ({EPOCHS} epochs of "
        f"{ROWS} rows; median running time {postgres.training_p50_s:.1f} s on PostgreSQL, {sqlite.training_p50_s:.1f} s "
        f"on SQLite) from {TENANTS} tenants, submitted at once to an embedded platform with {WORKERS} small workers "
        "(fixed, one training each; fork server on). SQLite: the embedded default, Prefect, MLflow and the metadata on "
        "SQLite files in the home; PostgreSQL: each on a database of its own on 127.0.0.1:5432. Makespan: first "
        "submission to the last request finalized (promotion included). Utilisation: the attempts' running time "
        "(training code started to attempt ended) over workers x makespan; what is missing is dispatch, "
        "finalization and the supervisor's ticks between trainings. ERROR lines: the Prefect server's log during "
        f"the drain. Target on PostgreSQL: utilisation >= {UTILISATION_TARGET:.0%} and 0 server errors: "
        f"{'met' if met else 'NOT met'}. The machine is shared: load average (5 min) "
        f"{', '.join(f'{load:.1f}' for load in loads)} on {os.cpu_count()} cores at the start, between the runs and "
        "at the end; trainings and dispatch slow down with it, SQLite's and PostgreSQL's alike."
    )
    write_section("drain", "Draining a backlog: SQLite against PostgreSQL", body)
    print(body)


if __name__ == "__main__":
    main()
