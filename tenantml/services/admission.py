"""Submitting a training request: validate everything that can be validated now, then admit it.

Admission (claim 2 of the patent): a tenant/model already training answers with the running
request; a request whose data and parameters equal the last completed training is skipped as up
to date unless forced. Nothing is written unless the request is valid.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from tenantml.adapters.store import Store
from tenantml.domain.names import check_model_name
from tenantml.domain.request import RequestStatus, TrainingRequest, TrainingSpec
from tenantml.errors import InvalidDataset, InvalidRequest, UnknownTenant
from tenantml.adapters.storage import TenantStorage
from tenantml.ml.algorithms import validate_params
from tenantml.ml.dataset import fingerprint_file, read_columns

__all__ = ["Admission", "Decision", "TrainingOrder", "request_training", "submit_training"]

PROMOTION_POLICIES = ("always", "if-better")


class Decision(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    UP_TO_DATE = "up_to_date"


@dataclass(frozen=True)
class Admission:
    request_id: str
    decision: Decision
    message: str


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


def check_promotion(policy: str) -> str:
    """``always``, or ``if-better:<metric>`` / ``if-better`` (on the algorithm's main metric)."""
    if policy == "always" or policy == "if-better" or policy.startswith("if-better:") and len(policy) > 10:
        return policy
    raise InvalidRequest(f"invalid promotion policy {policy!r}: use 'always', 'if-better' or 'if-better:<metric>'")


def submit_training(store: Store, storage: TenantStorage, order: TrainingOrder, now: datetime | None = None) -> Admission:
    now = now or datetime.now(UTC)
    if not store.tenant_exists(order.tenant):
        raise UnknownTenant(order.tenant)
    check_model_name(order.model)
    params = validate_params(order.algorithm, order.params)
    promotion = check_promotion(order.promotion)
    path = storage.resolve(order.tenant, order.dataset)
    columns = read_columns(path)
    if order.target not in columns:
        shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise InvalidDataset(f"target column {order.target!r} is not in dataset {order.dataset!r}; columns: {shown}")

    if order.idempotency_key:
        earlier = store.by_idempotency_key(order.idempotency_key)
        if earlier is not None and earlier.tenant != order.tenant:  # keys are global: never answer with theirs
            raise InvalidRequest(f"idempotency key {order.idempotency_key!r} is already in use: choose another one")
        if earlier is not None:
            return Admission(earlier.id, Decision.DUPLICATE, f"idempotency key seen before: request {earlier.id}")

    spec = TrainingSpec(
        tenant=order.tenant,
        model=order.model,
        dataset=str(path),
        target=order.target,
        algorithm=order.algorithm,
        params=params,
        dataset_fingerprint=fingerprint_file(path),
        promotion=promotion,
    )
    running = store.active_request(order.tenant, order.model)
    if running is not None:
        return Admission(running.id, Decision.DUPLICATE, f"{order.tenant}/{order.model} is already training: request {running.id}")

    request = TrainingRequest(
        id=str(uuid.uuid4()),
        spec=spec,
        status=RequestStatus.PENDING,
        created_at=now,
        updated_at=now,
        idempotency_key=order.idempotency_key,
        force=order.force,
    )
    last = store.last_completed(order.tenant, order.model)
    if not order.force and last is not None and last.spec.training_fingerprint == spec.training_fingerprint:
        request.status = RequestStatus.SKIPPED
        request.reason = f"up to date: same data and parameters as request {last.id} (version {last.model_version})"
        request.finished_at = now
        request.finalized_at = now  # nothing to promote or clean up
        request.model_version = last.model_version
        store.add_request(request)
        return Admission(request.id, Decision.UP_TO_DATE, request.reason)

    try:
        store.add_request(request)
    except IntegrityError:
        running = store.active_request(order.tenant, order.model)
        if running is None:
            raise
        return Admission(running.id, Decision.DUPLICATE, f"{order.tenant}/{order.model} is already training: request {running.id}")
    return Admission(request.id, Decision.ACCEPTED, f"accepted: request {request.id}")


def request_training(
    store: Store, storage: TenantStorage, start_master: Callable[[str, str], object], order: TrainingOrder,
    now: datetime | None = None,
) -> Admission:
    """Admit the order and, if it was accepted, start its training master.

    ``start_master(request_id, idempotency_key)``: the key is the request's, so starting twice
    (a retried command) starts one master.
    """
    admission = submit_training(store, storage, order, now)
    if admission.decision is Decision.ACCEPTED:
        start_master(admission.request_id, f"master:{admission.request_id}")
    return admission
