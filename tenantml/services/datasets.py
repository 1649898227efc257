"""A tenant's datasets: upload one (streamed, size-limited, named by the platform), list them, delete one.

The upload's name is a file name checked by :func:`tenantml.domain.dataset.check_dataset_name`;
the bytes go to a partial file the platform names, and become the dataset only once complete and
readable as a table (its header, read by the bounded reader admission uses). A dataset a waiting
or running training reads cannot be deleted: that training would fail on it.
"""

from __future__ import annotations

from typing import Any

from tenantml.domain.dataset import StoredDataset
from tenantml.errors import DatasetInUse, InvalidDataset, UnknownTenant
from tenantml.ml.dataset import read_columns
from tenantml.ports import DatasetStorage, DatasetUpload, RequestStore, TenantDirectory

__all__ = ["dataset_view", "delete_dataset", "finish_upload", "list_datasets", "start_upload"]

ACTIVE_SCAN = 1_000
"""Newest requests of the tenant checked for one that still reads a dataset about to be deleted."""


def dataset_view(dataset: StoredDataset) -> dict[str, Any]:
    return {"name": dataset.name, "size": dataset.size, "modified_at": dataset.modified_at.isoformat()}


def start_upload(directory: TenantDirectory, storage: DatasetStorage, tenant: str, name: str,
                 limit: int) -> DatasetUpload:
    if not directory.tenant_exists(tenant):  # an operator's typo: a tenant's key always names its own
        raise UnknownTenant(tenant, directory.list_tenants())
    return storage.open_upload(tenant, name, limit)


def finish_upload(storage: DatasetStorage, tenant: str, upload: DatasetUpload, max_header_bytes: int) -> dict[str, Any]:
    """Check the complete upload is a table, then put it in place; a file that is not is discarded."""
    name = upload.destination.name
    try:
        upload.close()
        columns = read_columns(upload.partial, max_header_bytes)
    except InvalidDataset as err:
        upload.discard()
        raise InvalidDataset(str(err).replace(repr(str(upload.partial)), repr(name))) from None
    except BaseException:
        upload.discard()
        raise
    upload.commit()
    found = next(d for d in storage.datasets(tenant) if d.name == name)
    return {**dataset_view(found), "columns": columns}


def list_datasets(storage: DatasetStorage, tenant: str) -> list[dict[str, Any]]:
    return [dataset_view(d) for d in storage.datasets(tenant)]


def delete_dataset(store: RequestStore, storage: DatasetStorage, tenant: str, dataset: str) -> None:
    path = storage.resolve(tenant, dataset)  # NotFound, or outside the tenant's storage, before anything else
    for request in store.list_requests(tenant=tenant, limit=ACTIVE_SCAN):
        if not request.status.is_terminal and request.spec.dataset == str(path):
            raise DatasetInUse(dataset, request.id)
    storage.delete(tenant, dataset)
