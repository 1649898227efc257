"""A tenant's whole journey through the tenant API alone, on the real platform: with only its key
(no database, Prefect or MLflow address), it uploads a dataset, trains, follows the training by its
events, reads the attempt history, trains again, and promotes and rolls back a version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.tenant_api.client import TenantApi
from tests.support.platform import RunningPlatform, classification_frame


def _follow(api: TenantApi, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    ended = api.follow(request_id, events.append, timeout_s=240)
    return ended, events


def test_a_tenant_uploads_trains_follows_and_promotes_through_the_tenant_api_alone(
        started: tuple[EmbeddedPlatform, RunningPlatform]) -> None:
    embedded, platform = started
    assert embedded.state is not None and embedded.state.tenant_api_url
    tenant, key = "t-" + uuid.uuid4().hex[:10], new_api_key()
    platform.connection.store.add_tenant(tenant, hash_api_key(key), datetime.now(UTC))  # the operator's part
    api = TenantApi(embedded.state.tenant_api_url, key)

    csv = classification_frame(rows=3000).to_csv(index=False).encode()
    uploaded = api._json("PUT", "/v1/datasets/churn.csv", content=csv)
    assert uploaded["size"] == len(csv) and uploaded["columns"][-1] == "label"
    assert [d["name"] for d in api.datasets()] == ["churn.csv"]

    order = {"model": "churn", "dataset": "churn.csv", "target": "label", "algorithm": "sgd_classifier",
             "params": {"epochs": 10}}
    first = api.submit(**order)
    assert first["decision"] == "accepted"
    ended, events = _follow(api, first["request_id"])
    assert ended["status"] == "completed" and ended["model_version"] == "1", ended
    assert events and events[0]["request_id"] == first["request_id"]
    steps = [e["step"] for e in events]
    assert steps == sorted(steps)  # progress only moves forward

    shown = api.training(first["request_id"])
    assert shown["tenant"] == tenant and shown["metrics"]
    assert len(shown["attempts"]) >= 1 and shown["attempts"][-1]["worker_uuid"]
    assert [t["request_id"] for t in api.trainings()] == [first["request_id"]]

    second = api.submit(**order, force=True)
    assert _follow(api, second["request_id"])[0]["model_version"] == "2"
    versions = api.versions("churn")
    assert versions["champion"] == "2"
    assert [v["version"] for v in versions["versions"]] == ["1", "2"]
    assert all("accuracy" in v["metrics"] for v in versions["versions"])

    assert api.promote("churn", "1") == {"tenant": tenant, "model": "churn", "champion": "1",
                                         "previous_champion": "2"}
    assert api.rollback("churn")["champion"] == "2"
    assert api.models()[0]["champion"] == "2"
    api.close()
