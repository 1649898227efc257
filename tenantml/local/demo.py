"""`make demo`: the whole platform on its embedded defaults, in a temporary home.

Starts Prefect, MLflow and the process workers; creates two tenants with a dataset each; submits a
training for each through the training master; shows progress; prints what was registered; and
stops everything it started.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tenantml.domain.request import TrainingRequest
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.bootstrap import Connection
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.state import connected
from tenantml.settings import load_settings

DEMO_TRAININGS = (
    # tenant, model, algorithm, rows, seed
    ("acme", "churn", "sgd_classifier", 20_000, 7),
    ("globex", "fraud", "hist_gradient_boosting_classifier", 10_000, 11),
)


def write_dataset(path: Path, rows: int, seed: int) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    features, labels = make_classification(
        n_samples=rows, n_features=10, n_informative=6, n_clusters_per_class=1, class_sep=1.2, random_state=seed
    )
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["label"] = labels
    frame.to_csv(path, index=False)


def main() -> int:
    home = Path(os.environ.get("TENANTML_HOME") or tempfile.mkdtemp(prefix="tenantml-demo-"))
    settings = load_settings(home=home)
    platform = EmbeddedPlatform(settings)
    started = time.monotonic()
    print(f"tenantml demo: starting the embedded platform in {home} ...", flush=True)
    try:
        state = platform.start()
        print(f"  up in {time.monotonic() - started:.1f} s. Prefect UI {state.prefect_ui_url}  "
              f"MLflow UI {state.mlflow_tracking_uri}", flush=True)
        settings = connected(load_settings(home=home))
        connection = Connection(settings)
        request_ids, keys = submit_all(connection, home)
        finished = wait_all(connection, request_ids)
        print_summary(connection, finished)
        predict_over_http(str(state.inference_url), finished, keys, home)
        failed = [r for r in finished if r.status.value != "completed"]
        return 1 if failed else 0
    finally:
        platform.stop()
        print(f"demo finished in {time.monotonic() - started:.1f} s; platform stopped.", flush=True)


def submit_all(connection: Connection, home: Path) -> tuple[list[str], dict[str, str]]:
    from tenantml.services.admission import TrainingOrder, submit_training

    ids, keys = [], {}
    for tenant, model, algorithm, rows, seed in DEMO_TRAININGS:
        if not connection.store.tenant_exists(tenant):
            keys[tenant] = new_api_key()
            connection.store.add_tenant(tenant, hash_api_key(keys[tenant]), datetime.now(UTC))
        source = home / f"{tenant}-{model}.csv"
        write_dataset(source, rows, seed)
        connection.storage.add(tenant, source, f"{model}.csv")
        admission = submit_training(
            connection.store, connection.storage,
            TrainingOrder(tenant, model, f"{model}.csv", "label", algorithm, {}, force=True),
        )
        print(f"  submitted {tenant}/{model} ({algorithm}): request {admission.request_id}", flush=True)
        ids.append(admission.request_id)
    return ids, keys


def wait_all(connection: Connection, request_ids: list[str], timeout_s: float = 480) -> list[TrainingRequest]:
    deadline = time.monotonic() + timeout_s
    last_line = ""
    while True:
        requests = [connection.store.get_request(i) for i in request_ids]
        line = "  " + " | ".join(
            f"{r.tenant}/{r.model}: {r.status.value} {r.step}/{r.total_steps or '?'}" for r in requests
        )
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if all(r.status.is_terminal and r.finalized_at for r in requests):  # promoted and cleaned up
            return requests
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo trainings did not finish within {timeout_s:.0f} s")
        time.sleep(1.0)


def print_summary(connection: Connection, requests: list[TrainingRequest]) -> None:
    registry = connection.registry
    print("\n  tenant  model  status     version  champion  metric               duration  attempts")
    for r in requests:
        champion = registry.champion(r.tenant, r.model) if r.model_version else None
        metric = next(iter(sorted(r.metrics.items())), ("-", float("nan")))
        duration = (r.finished_at - r.created_at).total_seconds() if r.finished_at else float("nan")
        print(f"  {r.tenant:<7} {r.model:<6} {r.status.value:<10} {r.model_version or '-':<8} "
              f"{champion or '-':<9} {metric[0]}={metric[1]:.4f}".ljust(80)
              + f"{duration:6.1f} s  {len(r.attempts)}")
        if r.reason:
            print(f"    reason: {r.reason}")
    print("  registered models: " + ", ".join(f"{r.tenant}.{r.model}@champion" for r in requests if r.model_version))


def predict_over_http(url: str, requests: list[TrainingRequest], keys: dict[str, str], home: Path) -> None:
    """Ask the inference service for a prediction with each tenant's key, as a client would."""
    import httpx
    import pandas as pd

    print(f"\n  inference at {url}:")
    for r in requests:
        rows = pd.read_csv(home / f"{r.tenant}-{r.model}.csv", nrows=3).drop(columns="label").to_dict("records")
        response = httpx.post(f"{url}/predict", json={"model": r.model, "rows": rows},
                              headers={"Authorization": f"Bearer {keys[r.tenant]}"}, timeout=60)
        response.raise_for_status()
        answer = response.json()
        print(f"  POST /predict as {r.tenant}, model {r.model}: predictions {answer['predictions']} "
              f"(version {answer['model_version']})")
        other = next(t for t in keys if t != r.tenant)
        refused = httpx.post(f"{url}/predict", json={"model": r.model, "rows": rows},
                             headers={"Authorization": f"Bearer {keys[other]}"}, timeout=60)
        print(f"  the same request with {other}'s key: HTTP {refused.status_code}")
        if refused.status_code != 404:
            raise RuntimeError(f"tenant isolation broken: {other} got HTTP {refused.status_code} for {r.tenant}'s model")


if __name__ == "__main__":
    sys.exit(main())
