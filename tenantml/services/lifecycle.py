"""A tenant's lifecycle, by the operator: disable, enable, rotate its key, delete it.

- **Disable**: its keys are refused everywhere at once by the database (``TenantDisabled``) and by
  the inference service and tenant API within their key cache TTL (30 s); its MLflow user gets a
  password nobody knows (MLflow has no disabled users), refused within MLflow's auth cache TTL.
  Its waiting requests stay queued and the scheduler starts none (its running limit reads as 0);
  its running trainings are asked to checkpoint and hand back, and then wait like the others.
- **Rotate**: a new key at once; the old one is refused by the database at once and by every
  cached surface within the key cache TTL.
- **Delete**: cancels its requests, removes its MLflow side (registered models, the experiment's
  artifacts with every checkpoint and model file, its runs and experiment, its user), its datasets,
  and its records (requests and attempts rows: a deleted tenant leaves no history to mark), and
  reports the counts.

The MLflow side is an optional port (:class:`TenantMlflow`): a platform without MLflow auth has no
tenant users to change.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from tenantml.domain.names import check_tenant_name
from tenantml.domain.request import WORKING, AttemptEnd, RequestStatus, TrainingRequest
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import InvalidRequest, StaleEpoch, UnknownTenant
from tenantml.ports import DatasetStorage

__all__ = ["Deleted", "TenantLifecycleStore", "TenantMlflow", "delete_tenant", "disable_tenant",
           "enable_tenant", "rotate_key"]

DISABLED_REASON = "the tenant was disabled by the operator"


class TenantLifecycleStore(Protocol):
    def tenant_exists(self, name: str) -> bool: ...
    def list_tenants(self) -> list[str]: ...
    def set_disabled(self, name: str, disabled: bool) -> bool: ...
    def replace_key(self, name: str, api_key_sha256: str) -> None: ...
    def delete_tenant(self, name: str) -> int: ...
    def supervised(self) -> list[TrainingRequest]: ...
    def request_preemption(self, request_id: str, expected_epoch: int, reason: str, now: datetime) -> bool: ...
    def finish(self, request_id: str, expected_epoch: int, status: RequestStatus, now: datetime,
               reason: str | None = None, end: AttemptEnd | None = None) -> None: ...


class TenantMlflow(Protocol):
    def set_password(self, tenant: str, password: str | None = None) -> str: ...
    def delete_tenant_side(self, tenant: str) -> dict[str, int]: ...


@dataclass
class Deleted:
    tenant: str
    requests: int = 0
    cancelled: int = 0
    datasets: int = 0
    mlflow: dict[str, int] = field(default_factory=dict)


def _operator(api_key: str | None, verb: str) -> None:
    if api_key is not None:
        raise InvalidRequest(f"{verb} a tenant is an operator command: unset TENANTML_API_KEY")


def _existing(store: TenantLifecycleStore, name: str) -> str:
    if not store.tenant_exists(check_tenant_name(name)):
        raise UnknownTenant(name, store.list_tenants())
    return name


def disable_tenant(store: TenantLifecycleStore, name: str, now: datetime, mlflow: TenantMlflow | None = None,
                   api_key: str | None = None) -> list[str]:
    """Disable ``name``; returns the ids of the running trainings asked to stop at a checkpoint."""
    _operator(api_key, "disabling")
    store.set_disabled(_existing(store, name), True)
    if mlflow is not None:
        mlflow.set_password(name)  # a password nobody is shown: its MLflow logins end
    asked = []
    for request in store.supervised():
        if request.spec.tenant == name and request.status in WORKING:
            if store.request_preemption(request.id, request.epoch, DISABLED_REASON, now):
                asked.append(request.id)
    return asked


def enable_tenant(store: TenantLifecycleStore, name: str, mlflow: TenantMlflow | None = None,
                  api_key: str | None = None) -> str | None:
    """Enable ``name`` again; returns its new MLflow password (disabling ended the old one), if any."""
    _operator(api_key, "enabling")
    store.set_disabled(_existing(store, name), False)
    return None if mlflow is None else mlflow.set_password(name)


def rotate_key(store: TenantLifecycleStore, name: str, api_key: str | None = None) -> str:
    """A new API key for ``name``, returned once; the old one's digest is gone from this commit on."""
    _operator(api_key, "rotating the key of")
    key = new_api_key()
    store.replace_key(_existing(store, name), hash_api_key(key))
    return key


def delete_tenant(store: TenantLifecycleStore, storage: DatasetStorage, name: str, now: datetime,
                  mlflow: TenantMlflow | None = None, api_key: str | None = None) -> Deleted:
    """Remove everything of ``name``; the caller has asked for confirmation. Disables it first, so
    that nothing of it starts or is served while it is taken apart."""
    _operator(api_key, "deleting")
    store.set_disabled(_existing(store, name), True)
    deleted = Deleted(name)
    for request in store.supervised():
        if request.spec.tenant == name and not request.status.is_terminal:
            try:
                store.finish(request.id, request.epoch, RequestStatus.CANCELLED, now,
                             "cancelled: the tenant was deleted", AttemptEnd.CANCELLED)
                deleted.cancelled += 1
            except StaleEpoch:  # it moved on meanwhile: its rows go below anyway
                pass
    if mlflow is not None:
        deleted.mlflow = mlflow.delete_tenant_side(name)
    prefix = storage.prefix(name)
    if prefix.is_dir():
        deleted.datasets = sum(1 for path in prefix.rglob("*") if path.is_file() or path.is_symlink())
        shutil.rmtree(prefix)
    deleted.requests = store.delete_tenant(name)
    return deleted
