"""Where each tenant's datasets live, and the rule that a tenant reads only its own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tenantml.errors import DatasetNotFound, DatasetOutsideTenant

__all__ = ["TenantStorage"]


class TenantStorage:
    """Datasets of every tenant under one root: ``<root>/<tenant>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def prefix(self, tenant: str) -> Path:
        return self.root / tenant

    def resolve(self, tenant: str, dataset: str) -> Path:
        """The file a tenant named: relative to its prefix, or absolute (or file://) inside it."""
        prefix = self.prefix(tenant)
        raw = dataset.removeprefix("file://")
        if "://" in raw:
            raise DatasetOutsideTenant(dataset, str(prefix))
        candidate = Path(raw)
        path = (candidate if candidate.is_absolute() else prefix / candidate).resolve()
        if not path.is_relative_to(prefix):
            raise DatasetOutsideTenant(dataset, str(prefix))
        if not path.is_file():
            raise DatasetNotFound(dataset)
        return path

    def add(self, tenant: str, source: Path, name: str | None = None) -> Path:
        """Copy a file into the tenant's prefix; returns where it landed."""
        if not source.is_file():
            raise DatasetNotFound(str(source))
        resolved = source.resolve()
        if resolved.is_relative_to(self.root) and not resolved.is_relative_to(self.prefix(tenant)):
            raise DatasetOutsideTenant(str(source), str(self.prefix(tenant)))  # another tenant's file
        destination = self.prefix(tenant) / (name or source.name)
        if not destination.resolve().is_relative_to(self.prefix(tenant)):
            raise DatasetOutsideTenant(str(name), str(self.prefix(tenant)))
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, destination)  # a training reading the old file never sees half a new one
        return destination
