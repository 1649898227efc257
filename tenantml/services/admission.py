"""Submitting a training request: validate everything that can be validated now, then admit it.

Everything that can be checked without training is checked here, before anything is written: the
tenant, the model name, the algorithm and its parameters, the promotion policy, the dataset's
place (inside the tenant's storage) and its header (the target column). The admission rule itself
(duplicate, up to date, accepted) is the domain's: :mod:`tenantml.domain.admission`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tenantml.domain.admission import Admission, Decision, judge
from tenantml.domain.names import check_model_name
from tenantml.domain.promotion import PromotionPolicy
from tenantml.domain.request import RequestStatus, TrainingRequest, TrainingSpec
from tenantml.domain.tenant import check_queue_limit
from tenantml.errors import AlreadyTraining, InvalidDataset, InvalidRequest, UnknownTenant
from tenantml.ml.algorithms import validate_params
from tenantml.ml.dataset import measure_file, read_columns
from tenantml.ml.limits import TrainingLimits, check_training
from tenantml.ports import DatasetStorage, RequestStore, TenantDirectory
from tenantml.settings import Settings

__all__ = ["Admission", "Decision", "SubmissionLimits", "TrainingOrder", "submit_training", "training_limits"]


class AdmissionStore(TenantDirectory, RequestStore, Protocol):
    """What admission reads and writes."""


MAX_IDEMPOTENCY_KEY = 128
MAX_SCHEMA_CHARS = 100_000
"""MLflow's limit on a model-version tag value: each version carries its feature schema as one."""
MAX_TARGET_CHARS = 250
"""The target column's name is an MLflow run parameter; a name that long is a mistake, not a column."""


@dataclass(frozen=True)
class SubmissionLimits:
    """What a submission may ask for, checked before anything is written (see LimitSettings)."""

    max_queued: int | None = None
    max_dataset_bytes: int = 2 * 1024**3
    max_header_bytes: int = 1024**2
    max_columns: int = 1_000
    training: TrainingLimits = TrainingLimits()

    @classmethod
    def from_settings(cls, settings: Settings) -> SubmissionLimits:
        limits = settings.limits
        return cls(settings.quotas.max_queued, limits.max_dataset_bytes, limits.max_header_bytes, limits.max_columns,
                   training_limits(settings))


def training_limits(settings: Settings) -> TrainingLimits:
    limits = settings.limits
    return TrainingLimits(limits.max_rows, limits.max_total_steps, limits.max_model_parameters,
                          limits.max_checkpoint_bytes)


@dataclass(frozen=True)
class TrainingOrder:
    """A tenant's training request as submitted, before validation."""

    tenant: str
    model: str
    dataset: str
    target: str
    algorithm: str
    params: dict[str, object]
    force: bool = False
    idempotency_key: str | None = None
    promotion: str = "always"


def _checked_dataset(path: Path, order: TrainingOrder, limits: SubmissionLimits) -> list[str]:
    size = path.stat().st_size
    if size > limits.max_dataset_bytes:
        raise InvalidDataset(
            f"dataset {order.dataset!r} is {size} bytes, over the limit of {limits.max_dataset_bytes} "
            "(TENANTML_LIMITS__MAX_DATASET_BYTES): sample or split it"
        )
    columns = read_columns(path, limits.max_header_bytes)
    if len(columns) > limits.max_columns:
        raise InvalidDataset(
            f"dataset {order.dataset!r} has {len(columns)} columns, over the limit of {limits.max_columns} "
            "(TENANTML_LIMITS__MAX_COLUMNS): drop the columns the model does not need"
        )
    if order.target not in columns:
        shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise InvalidDataset(f"target column {order.target!r} is not in dataset {order.dataset!r}; columns: {shown}")
    if len(order.target) > MAX_TARGET_CHARS:
        raise InvalidDataset(f"target column name is {len(order.target)} characters, over {MAX_TARGET_CHARS}: rename it")
    # The schema tag as registration writes it, with the longest common dtype name.
    width = len(json.dumps([[name, "float64"] for name in columns if name != order.target]))
    if width > MAX_SCHEMA_CHARS:
        raise InvalidDataset(
            f"dataset {order.dataset!r} has a feature schema of about {width} characters ({len(columns)} column "
            f"names), over MLflow's limit of {MAX_SCHEMA_CHARS} on the version tag that holds it: use fewer or "
            "shorter column names"
        )
    return columns


def _validated_spec(
    store: AdmissionStore, storage: DatasetStorage, order: TrainingOrder, limits: SubmissionLimits
) -> TrainingSpec:
    if not store.tenant_exists(order.tenant):  # an operator's typo: a tenant's key always names its own
        raise UnknownTenant(order.tenant, store.list_tenants())
    check_model_name(order.model)
    params = validate_params(order.algorithm, order.params)
    promotion = PromotionPolicy.parse(order.promotion)
    path = storage.resolve(order.tenant, order.dataset)
    columns = _checked_dataset(path, order, limits)
    fingerprint, rows = measure_file(path)
    # Classes are not known before the data is read: two (the fewest) here, the real count in the worker.
    check_training(order.algorithm, params, rows, len(columns) - 1, 2, limits.training, f"dataset {order.dataset!r}")
    return TrainingSpec(
        tenant=order.tenant,
        model=order.model,
        dataset=str(path),
        target=order.target,
        algorithm=order.algorithm,
        params=params,
        dataset_fingerprint=fingerprint,
        promotion=str(promotion),
    )


def _earlier_by_key(store: AdmissionStore, order: TrainingOrder) -> Admission | None:
    if not order.idempotency_key:
        return None
    if len(order.idempotency_key) > MAX_IDEMPOTENCY_KEY or not order.idempotency_key.isprintable():
        raise InvalidRequest(
            f"invalid idempotency key of {len(order.idempotency_key)} characters: use at most "
            f"{MAX_IDEMPOTENCY_KEY} printable characters"
        )
    earlier = store.by_idempotency_key(order.tenant, order.idempotency_key)  # each tenant's keys are its own
    if earlier is not None:
        return Admission(earlier.id, Decision.DUPLICATE, f"idempotency key seen before: request {earlier.id}")
    return None


def submit_training(
    store: AdmissionStore,
    storage: DatasetStorage,
    order: TrainingOrder,
    now: datetime | None = None,
    limits: SubmissionLimits = SubmissionLimits(),
) -> Admission:
    """Validate ``order`` and record it as pending (accepted), skipped (up to date) or not at all (duplicate).

    An accepted request must fit the tenant's queue: its own limit, else ``limits.max_queued``
    (``TENANTML_QUOTAS__MAX_QUEUED``); QuotaExceeded names the limit and the count otherwise.
    """
    now = now or datetime.now(UTC)
    spec = _validated_spec(store, storage, order, limits)
    if (earlier := _earlier_by_key(store, order)) is not None:
        return earlier
    active = store.active_request(order.tenant, order.model)
    last = store.last_completed(order.tenant, order.model)
    decision, message = judge(spec, order.force, active, last)
    if decision is Decision.DUPLICATE and active is not None:
        return Admission(active.id, decision, message)
    request = TrainingRequest(
        id=str(uuid.uuid4()),
        spec=spec,
        status=RequestStatus.PENDING,
        created_at=now,
        updated_at=now,
        idempotency_key=order.idempotency_key,
        force=order.force,
    )
    if decision is Decision.ACCEPTED:
        own = store.queue_limit(order.tenant)
        check_queue_limit(order.tenant, store.count_waiting(order.tenant), own if own is not None else limits.max_queued)
    if decision is Decision.UP_TO_DATE:
        request.status, request.reason = RequestStatus.SKIPPED, message
        request.finished_at = request.finalized_at = now  # nothing to promote or clean up
        request.model_version = last.model_version if last else None
        store.add_request(request)
        return Admission(request.id, decision, message)
    try:
        store.add_request(request)
    except AlreadyTraining:  # another submitter won the race for the one active slot
        running = store.active_request(order.tenant, order.model)
        if running is None:
            raise
        decision, message = judge(spec, order.force, running, None)
        return Admission(running.id, decision, message)
    return Admission(request.id, Decision.ACCEPTED, f"accepted: request {request.id}")
