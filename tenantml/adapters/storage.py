"""Where each tenant's datasets live, and the rule that a tenant reads only its own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tenantml.errors import DatasetNotFound, DatasetOutsideTenant, InvalidRequest

__all__ = ["TenantStorage", "check_dataset_text"]


def check_dataset_text(text: str, what: str = "dataset") -> str:
    """Refuse NUL bytes and other control characters before they reach the file system (or a traceback)."""
    if not text.isprintable():
        raise InvalidRequest(
            f"invalid {what} {text!r}: use a path or name without control characters (NUL, newlines, ...)"
        )
    return text


class TenantStorage:
    """Datasets of every tenant under one root: ``<root>/<tenant>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def prefix(self, tenant: str) -> Path:
        return self.root / tenant

    def resolve(self, tenant: str, dataset: str) -> Path:
        """The file a tenant named: relative to its prefix, or absolute (or file://) inside it."""
        prefix = self.prefix(tenant)
        raw = check_dataset_text(dataset).removeprefix("file://")
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
        if resolved.stat().st_nlink > 1:  # a hard link can name another tenant's file under any path
            raise InvalidRequest(
                f"{str(source)!r} is a hard link: copy the file itself (hard links are refused so that no path "
                "outside a tenant's storage can name a file inside another's)"
            )
        destination = self.prefix(tenant) / check_dataset_text(name or source.name, "dataset name")
        if not destination.resolve().is_relative_to(self.prefix(tenant)):
            raise DatasetOutsideTenant(str(name), str(self.prefix(tenant)))
        if destination.resolve() == self.prefix(tenant) or destination.is_dir() or destination.name.startswith("."):
            raise InvalidRequest(
                f"invalid dataset name {name!r}: name a file, such as 'churn.csv', not a folder or a hidden name"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, destination)  # a training reading the old file never sees half a new one
        return destination
