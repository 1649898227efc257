"""Checkpoint overhead: the same training with checkpoints every 5 s (the default) and with only
the final one, against a real MLflow server and the SQLite metadata store."""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tenantml.adapters.database import create_database
from tenantml.adapters.registry import Registry
from tenantml.adapters.store import Store
from tenantml.adapters.tracking import Tracking
from tenantml.domain.request import Lease, WorkerClass
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.settings import TrainingSettings
from tenantml.adapters.storage import TenantStorage
from tenantml.services.worker import TrainingAttempt
from tenantml.services.admission import TrainingOrder, submit_training
from tests.benchmarks.report import table, write_section
from tests.support.platform import classification_frame
from tests.support.servers import start_mlflow

ROUNDS = 3


def one_training(store: Store, storage: TenantStorage, tracking: Tracking, registry: Registry,
                 tenant: str, interval_s: float) -> tuple[float, int]:
    admission = submit_training(store, storage, TrainingOrder(tenant, f"m{uuid.uuid4().hex[:6]}", "data.csv", "label",
                                                              "sgd_classifier", {"epochs": 100}, force=True))
    worker = str(uuid.uuid4())
    epoch = store.start_attempt(admission.request_id, 0, worker, WorkerClass.SMALL, datetime.now(UTC))
    attempt = TrainingAttempt(Lease(admission.request_id, worker, epoch), store, tracking, registry,
                              TrainingSettings(checkpoint_interval_s=interval_s))
    started = time.perf_counter()
    outcome = attempt.run()
    assert outcome.model_version, outcome
    commits = len([f for f in tracking.client.list_artifacts(store.get_request(admission.request_id).mlflow_run_id,
                                                             f"checkpoints/lease-{epoch}")])
    return time.perf_counter() - started, commits


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="tenantml-bench-checkpoint-"))
    (folder / "mlflow").mkdir()
    server = start_mlflow(folder / "mlflow")
    try:
        store = Store(create_database(f"sqlite:///{folder / 'tenantml.db'}"))
        storage = TenantStorage(folder / "datasets")
        tenant = "bench"
        store.add_tenant(tenant, hash_api_key(new_api_key()), datetime.now(UTC))
        storage.prefix(tenant).mkdir(parents=True)
        classification_frame(rows=20_000).to_csv(storage.prefix(tenant) / "data.csv", index=False)
        tracking, registry = Tracking(server.url), Registry(server.url)
        one_training(store, storage, tracking, registry, tenant, 1e9)  # warm-up
        with_ckpt, without, commits = [], [], []
        for _ in range(ROUNDS):
            seconds, count = one_training(store, storage, tracking, registry, tenant, 5.0)
            with_ckpt.append(seconds)
            commits.append(count)
            without.append(one_training(store, storage, tracking, registry, tenant, 1e9)[0])
    finally:
        server.stop()
    a, b = statistics.median(with_ckpt), statistics.median(without)
    rows = [["training with a checkpoint every 5 s (median)", f"{a:.2f} s", "same loop, final checkpoint only",
             f"{b:.2f} s", f"overhead {100 * (a - b) / b:+.1f}%", time.strftime("%Y-%m-%d")]]
    body = table(rows) + (f"\n\nsgd_classifier, 20,000 rows, 100 epochs (7,900 steps), {ROUNDS} rounds alternated; "
                          f"{statistics.median(commits):.0f} checkpoints committed per training (upload to MLflow, then the fenced pointer).")
    write_section("checkpoint", "Checkpoint overhead", body)
    print(body)


if __name__ == "__main__":
    main()
