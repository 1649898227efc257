"""Tenants' datasets in an object store: ``<tenant>/datasets/<name>`` under the store's root (in S3,
``s3://<bucket>/<prefix>/<tenant>/datasets/<name>``), with a local copy for the readers on this host.

The store is the truth: listing, deleting and resolving ask it. An upload lands in the local copy
first (the same partial-file, size-limited path as on disk), then goes to the store whole. A
training reads the local copy that :meth:`resolve` fetched, so pandas never talks to S3. The tenant
rule is the disk's: a tenant names only keys under its own prefix; ``..``, absolute paths outside
its copy, other buckets and other tenants' ``s3://`` keys are refused with DatasetOutsideTenant.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from tenantml.adapters.object_storage import MissingObject, ObjectStore, tenant_key
from tenantml.adapters.storage import TenantStorage, Upload, check_dataset_text
from tenantml.domain.dataset import StoredDataset
from tenantml.errors import DatasetNotFound, DatasetOutsideTenant

__all__ = ["ObjectTenantStorage"]

AREA = "datasets"


class ObjectTenantStorage(TenantStorage):
    """Datasets in ``objects``; ``root`` holds this host's copies (``<root>/<tenant>/<name>``).

    ``objects`` may be a function that builds the store when a dataset is first touched (loading the
    bucket block asks Prefect and builds a boto3 client: a process that never reads a dataset skips it).
    """

    def __init__(self, root: Path, objects: ObjectStore | Callable[[], ObjectStore]) -> None:
        super().__init__(root)
        self._objects = objects

    @cached_property
    def objects(self) -> ObjectStore:
        return self._objects() if callable(self._objects) else self._objects

    def tenant_url(self, tenant: str) -> str:
        return self.objects.url(f"{tenant}/{AREA}/")

    def name_in_tenant(self, tenant: str, dataset: str) -> str:
        """The dataset's name inside the tenant's prefix, from a name, a path into its copy or its URL."""
        raw = check_dataset_text(dataset)
        outside = DatasetOutsideTenant(dataset, self.tenant_url(tenant))
        if "://" in raw and not raw.startswith("file://"):
            key = self.objects.key_of(raw)
            own = f"{tenant}/{AREA}/"
            if key is None or not key.startswith(own):
                raise outside
            raw = key[len(own):]
        else:
            raw = raw.removeprefix("file://")
            if raw.startswith("/"):
                path = Path(os.path.normpath(raw))
                if not path.is_relative_to(self.prefix(tenant)):
                    raise outside
                raw = path.relative_to(self.prefix(tenant)).as_posix()
        name = posixpath.normpath(raw)
        if name in (".", "") or name.startswith("../") or name == ".." or name.startswith("/"):
            raise outside
        if any(part.startswith(".") for part in name.split("/")):
            raise DatasetNotFound(dataset)  # a platform file, never a listed dataset
        return name

    def _key(self, tenant: str, name: str) -> str:
        return tenant_key(tenant, AREA, name)

    def resolve(self, tenant: str, dataset: str) -> Path:
        """This host's copy of the dataset, fetched from the store now (a replaced dataset is re-read)."""
        name = self.name_in_tenant(tenant, dataset)
        copy = self.prefix(tenant) / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(f".{copy.name}.{uuid.uuid4().hex}.partial")
        try:
            self.objects.get_file(self._key(tenant, name), partial)
        except MissingObject:
            partial.unlink(missing_ok=True)
            raise DatasetNotFound(dataset) from None
        os.replace(partial, copy)
        return copy

    def datasets(self, tenant: str) -> list[StoredDataset]:
        own = f"{tenant}/{AREA}/"
        return [StoredDataset(found.key[len(own):], found.size, found.modified_at)
                for found in self.objects.list(own)
                if not any(part.startswith(".") for part in found.key[len(own):].split("/"))]

    def delete(self, tenant: str, dataset: str) -> Path:
        name = self.name_in_tenant(tenant, dataset)
        key = self._key(tenant, name)
        if not any(found.key == key for found in self.objects.list(key)):
            raise DatasetNotFound(dataset)
        self.objects.delete(key)
        copy = self.prefix(tenant) / name
        copy.unlink(missing_ok=True)
        return copy

    def open_upload(self, tenant: str, name: str, limit: int) -> Upload:
        local = super().open_upload(tenant, name, limit)
        return _PublishedUpload(local, self.objects, self._key(tenant, local.destination.name))

    def add(self, tenant: str, source: Path, name: str | None = None) -> Path:
        copy = super().add(tenant, source, name)
        self.objects.put_file(self._key(tenant, copy.relative_to(self.prefix(tenant)).as_posix()), copy)
        return copy


class _PublishedUpload(Upload):
    """An upload to the local copy that, once committed, is written to the store whole."""

    def __init__(self, local: Upload, objects: ObjectStore, key: str) -> None:  # noqa: D107
        self.partial, self.destination, self.limit = local.partial, local.destination, local.limit
        self.size = local.size
        self._file = local._file
        self._objects, self._key = objects, key

    def commit(self) -> Path:
        destination = super().commit()
        self._objects.put_file(self._key, destination)
        return destination
