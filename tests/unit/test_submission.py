"""Submitting a training request: validation that writes nothing, and admission (claim 2)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tenantml.adapters.database import create_database, requests
from tenantml.adapters.store import Store
from tenantml.domain.request import Lease, RequestStatus, WorkerClass
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import (
    DatasetNotFound,
    DatasetOutsideTenant,
    InvalidDataset,
    InvalidParameter,
    InvalidRequest,
    QuotaExceeded,
    UnknownAlgorithm,
    UnknownTenant,
)
from tenantml.adapters.storage import TenantStorage
from tenantml.services.admission import Decision, SubmissionLimits, TrainingOrder, submit_training

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CSV = "x1,x2,label\n1.0,2.0,a\n3.0,4.0,b\n5.0,6.0,a\n"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = create_database(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, tenant_name: str) -> Store:
    store = Store(engine)
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), NOW)
    return store


@pytest.fixture
def storage(tmp_path: Path, tenant_name: str) -> TenantStorage:
    storage = TenantStorage(tmp_path / "datasets")
    storage.prefix(tenant_name).mkdir(parents=True)
    (storage.prefix(tenant_name) / "data.csv").write_text(CSV)
    return storage


@pytest.fixture
def order(tenant_name: str) -> TrainingOrder:
    return TrainingOrder(tenant_name, "churn", "data.csv", "label", "sgd_classifier", {"epochs": "2"})


def request_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(requests)).scalar_one())


def complete(store: Store, request_id: str, version: str = "1") -> None:
    worker = str(uuid.uuid4())
    epoch = store.start_attempt(request_id, 0, worker, WorkerClass.SMALL, NOW)
    store.complete(Lease(request_id, worker, epoch), version, {"accuracy": 1.0}, NOW)


def test_accepted_request_is_pending_with_the_resolved_dataset_and_complete_params(
    store: Store, storage: TenantStorage, order: TrainingOrder, tenant_name: str
) -> None:
    admission = submit_training(store, storage, order, NOW)
    assert admission.decision is Decision.ACCEPTED and admission.request_id in admission.message
    request = store.get_request(admission.request_id, tenant=tenant_name)
    assert request.status is RequestStatus.PENDING
    assert request.spec.dataset == str(storage.prefix(tenant_name) / "data.csv")
    assert request.spec.params["epochs"] == 2 and "alpha" in request.spec.params  # typed, defaults filled in
    assert len(request.spec.dataset_fingerprint) == 64


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        ({"tenant": "nobody"}, UnknownTenant, "nobody"),
        ({"model": "bad/name"}, InvalidRequest, "bad/name"),
        ({"algorithm": "magic_forest"}, UnknownAlgorithm, "magic_forest"),
        ({"params": {"epochs": "many"}}, InvalidParameter, "many"),
        ({"params": {"no_such_knob": 1}}, InvalidParameter, "no_such_knob"),
        ({"promotion": "sometimes"}, InvalidRequest, "sometimes"),
        ({"dataset": "../other-tenant/x.csv"}, DatasetOutsideTenant, "../other-tenant/x.csv"),
        ({"dataset": "missing.csv"}, DatasetNotFound, "missing.csv"),
        ({"dataset": "s3://bucket/other/x.csv"}, DatasetOutsideTenant, "s3://bucket/other/x.csv"),
        ({"target": "churned"}, InvalidDataset, "churned"),
    ],
)
def test_invalid_order_raises_naming_the_value_and_writes_nothing(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine,
    change: dict[str, object], error: type[Exception], named: str,
) -> None:
    other = storage.root / "other-tenant"
    other.mkdir(parents=True)
    (other / "x.csv").write_text(CSV)  # it exists, but it is not this tenant's
    with pytest.raises(error) as caught:
        submit_training(store, storage, replace(order, **change), NOW)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert request_count(engine) == 0


def test_absolute_path_outside_the_tenant_prefix_is_refused(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tmp_path: Path, tenant_name: str
) -> None:
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text(CSV)
    sibling = storage.root / (tenant_name + "x") / "data.csv"  # a prefix that merely starts the same
    sibling.parent.mkdir(parents=True)
    sibling.write_text(CSV)
    for dataset in (str(elsewhere), f"file://{elsewhere}", str(sibling)):
        with pytest.raises(DatasetOutsideTenant, match=dataset):
            submit_training(store, storage, replace(order, dataset=dataset), NOW)
    assert request_count(engine) == 0


def test_duplicate_while_active_returns_the_existing_request(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine
) -> None:
    first = submit_training(store, storage, order, NOW)
    again = submit_training(store, storage, replace(order, params={"epochs": 9}), NOW)
    assert (again.decision, again.request_id) == (Decision.DUPLICATE, first.request_id)
    assert "already training" in again.message
    assert "this submission's settings (epochs=9) were ignored" in again.message  # said, not silently dropped
    assert f"tenantml run cancel {first.request_id}" in again.message
    same = submit_training(store, storage, order, NOW)
    assert same.decision is Decision.DUPLICATE and "ignored" not in same.message
    assert request_count(engine) == 1


def test_unchanged_data_and_params_after_completion_are_skipped_unless_forced(
    store: Store, storage: TenantStorage, order: TrainingOrder, tenant_name: str
) -> None:
    first = submit_training(store, storage, order, NOW)
    complete(store, first.request_id, version="3")

    same = replace(order, params={"epochs": 2, "alpha": "0.0001"})  # explicit defaults are the same params
    skipped = submit_training(store, storage, same, NOW)
    assert skipped.decision is Decision.UP_TO_DATE and "up to date" in skipped.message
    record = store.get_request(skipped.request_id)
    assert (record.status, record.model_version) == (RequestStatus.SKIPPED, "3")
    assert store.active_request(tenant_name, "churn") is None

    forced = submit_training(store, storage, replace(order, force=True), NOW)
    assert forced.decision is Decision.ACCEPTED
    assert store.get_request(forced.request_id).force


def test_changed_data_or_params_after_completion_are_trained(
    store: Store, storage: TenantStorage, order: TrainingOrder, tenant_name: str
) -> None:
    complete(store, submit_training(store, storage, order, NOW).request_id)
    changed_params = submit_training(store, storage, replace(order, params={"epochs": 3}), NOW)
    assert changed_params.decision is Decision.ACCEPTED
    complete(store, changed_params.request_id)
    (storage.prefix(tenant_name) / "data.csv").write_text(CSV + "7.0,8.0,b\n")
    changed_data = submit_training(store, storage, replace(order, params={"epochs": 3}), NOW)
    assert changed_data.decision is Decision.ACCEPTED


def test_idempotency_key_returns_the_same_request(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine
) -> None:
    keyed = replace(order, idempotency_key="order-17")
    first = submit_training(store, storage, keyed, NOW)
    complete(store, first.request_id)
    again = submit_training(store, storage, keyed, NOW)
    assert (again.decision, again.request_id) == (Decision.DUPLICATE, first.request_id)
    assert request_count(engine) == 1


def test_idempotency_key_of_another_tenant_is_not_revealed(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    first = submit_training(store, storage, replace(order, idempotency_key="order-17"), NOW)
    other = tenant_name + "-b"
    store.add_tenant(other, hash_api_key(new_api_key()), NOW)
    outside = storage.root.parent / "upload.csv"
    outside.write_bytes((storage.prefix(tenant_name) / "data.csv").read_bytes())
    storage.add(other, outside, "data.csv")
    theirs = submit_training(store, storage, replace(order, tenant=other, idempotency_key="order-17"), NOW)
    assert theirs.decision is Decision.ACCEPTED and theirs.request_id != first.request_id  # nothing revealed
    assert request_count(engine) == 2
    with pytest.raises(InvalidRequest, match="at most 128 printable characters"):
        submit_training(store, storage, replace(order, model="fraud", idempotency_key="k" * 129), NOW)
    with pytest.raises(InvalidRequest, match="printable"):
        submit_training(store, storage, replace(order, model="fraud", idempotency_key="a\x00b"), NOW)


def test_a_request_beyond_the_queue_limit_is_refused_naming_the_limit_and_the_count(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    first = submit_training(store, storage, order, NOW, limits=SubmissionLimits(max_queued=2))
    second = submit_training(store, storage, replace(order, model="fraud"), NOW, limits=SubmissionLimits(max_queued=2))
    with pytest.raises(QuotaExceeded, match=r"has 2 training requests waiting .* at most 2") as refused:
        submit_training(store, storage, replace(order, model="spam"), NOW, limits=SubmissionLimits(max_queued=2))
    assert (refused.value.waiting, refused.value.limit) == (2, 2)
    assert request_count(engine) == 2  # nothing accepted before it is disturbed
    assert {store.get_request(a.request_id).status for a in (first, second)} == {RequestStatus.PENDING}
    # a duplicate of a waiting request queues nothing, so it is answered, not refused
    assert submit_training(store, storage, order, NOW, limits=SubmissionLimits(max_queued=2)).request_id == first.request_id


def test_a_tenant_s_own_queue_limit_wins_over_the_default_and_running_requests_do_not_count(
    store: Store, storage: TenantStorage, order: TrainingOrder, tenant_name: str
) -> None:
    store.set_queue_limit(tenant_name, 1)
    first = submit_training(store, storage, order, NOW, limits=SubmissionLimits(max_queued=10))
    with pytest.raises(QuotaExceeded):
        submit_training(store, storage, replace(order, model="fraud"), NOW, limits=SubmissionLimits(max_queued=10))
    worker = str(uuid.uuid4())
    epoch = store.start_attempt(first.request_id, 0, worker, WorkerClass.SMALL, NOW)
    assert store.count_waiting(tenant_name) == 0  # a dispatched attempt holds a slot: no longer queued
    store.mark_running(Lease(first.request_id, worker, epoch), NOW)
    assert store.count_waiting(tenant_name) == 0
    accepted = submit_training(store, storage, replace(order, model="fraud"), NOW, limits=SubmissionLimits(max_queued=10))
    assert accepted.decision is Decision.ACCEPTED
    store.set_queue_limit(tenant_name, None)
    assert store.queue_limit(tenant_name) is None


def test_a_header_without_a_line_break_is_refused_in_bounded_memory(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    (storage.prefix(tenant_name) / "one-line.csv").write_bytes(b"x," * 600_000)  # 1.2 MB, no newline
    with pytest.raises(InvalidDataset, match="no line break in its first 1048576 bytes"):
        submit_training(store, storage, replace(order, dataset="one-line.csv"), NOW)
    assert request_count(engine) == 0


def test_a_dataset_over_the_size_or_column_limit_is_refused_naming_the_limit(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    with pytest.raises(InvalidDataset, match=r"over the limit of 10 \(TENANTML_LIMITS__MAX_DATASET_BYTES\)"):
        submit_training(store, storage, order, NOW, limits=SubmissionLimits(max_dataset_bytes=10))
    wide = ",".join(f"x{i}" for i in range(50)) + ",label\n" + ",".join(["1"] * 51) + "\n"
    (storage.prefix(tenant_name) / "wide.csv").write_text(wide)
    with pytest.raises(InvalidDataset, match=r"has 51 columns, over the limit of 20"):
        submit_training(store, storage, replace(order, dataset="wide.csv"), NOW, limits=SubmissionLimits(max_columns=20))
    assert request_count(engine) == 0


def _write(storage: TenantStorage, tenant: str, name: str, header: list[str], rows: int) -> None:
    line = ",".join(["1"] * (len(header) - 1) + ["0"]) + "\n"
    other = ",".join(["2"] * (len(header) - 1) + ["1"]) + "\n"
    (storage.prefix(tenant) / name).write_text(",".join(header) + "\n" + (line + other) * (rows // 2))


def test_rows_steps_and_weights_over_their_limits_are_refused_at_submission_naming_the_limit(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    from tenantml.ml.limits import TrainingLimits

    _write(storage, tenant_name, "rows.csv", ["a", "b", "label"], 1_000)
    rows = replace(order, dataset="rows.csv", params={"epochs": "100", "batch_size": "10"})
    small = SubmissionLimits(training=TrainingLimits(max_rows=999))
    with pytest.raises(InvalidDataset, match=r"1000 rows, over the limit of 999 \(TENANTML_LIMITS__MAX_ROWS\)"):
        submit_training(store, storage, rows, NOW, limits=small)
    few_steps = SubmissionLimits(training=TrainingLimits(max_total_steps=7_999))  # 800 rows train, 200 validate
    with pytest.raises(InvalidParameter, match=r"8000 steps on 1000 rows, over the limit of 7999 "
                                               r"\(TENANTML_LIMITS__MAX_TOTAL_STEPS\)"):
        submit_training(store, storage, rows, NOW, limits=few_steps)
    huge = replace(order, dataset="rows.csv", algorithm="mlp_classifier",
                   params={"hidden_layer_sizes": "4096,4096,4096,4096,4096,4096,4096,4096"})
    with pytest.raises(InvalidParameter, match=r"117[0-9]{6} weights .* \(TENANTML_LIMITS__MAX_MODEL_PARAMETERS\)"):
        submit_training(store, storage, huge, NOW)
    assert request_count(engine) == 0
    assert submit_training(store, storage, rows, NOW).decision is Decision.ACCEPTED


def test_a_dataset_too_wide_for_mlflows_schema_tag_is_refused_at_submission(
    store: Store, storage: TenantStorage, order: TrainingOrder, engine: Engine, tenant_name: str
) -> None:
    from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH

    from tenantml.services.admission import MAX_SCHEMA_CHARS

    assert MAX_SCHEMA_CHARS == MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
    _write(storage, tenant_name, "wide.csv", [f"{'f' * 150}_{i:03d}" for i in range(900)] + ["label"], 2)
    with pytest.raises(InvalidDataset, match="feature schema of about 1[0-9]{5} characters .* MLflow's limit"):
        submit_training(store, storage, replace(order, dataset="wide.csv"), NOW)
    assert request_count(engine) == 0
