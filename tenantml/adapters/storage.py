"""Where each tenant's datasets live, and the rule that a tenant reads only its own."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tenantml.domain.dataset import StoredDataset, check_dataset_name
from tenantml.errors import DatasetNotFound, DatasetOutsideTenant, InvalidRequest, PayloadTooLarge

__all__ = ["TenantStorage", "Upload", "check_dataset_text"]

UPLOAD_PREFIX = ".upload-"


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
        try:
            found = path.stat()
        except OSError:
            raise DatasetNotFound(dataset) from None
        _check_plain_file(dataset, found)
        return path

    def datasets(self, tenant: str) -> list[StoredDataset]:
        """The tenant's dataset files, by name; folders, hidden names and anything but a plain file left out."""
        prefix = self.prefix(tenant)
        found = []
        for path in sorted(prefix.rglob("*")) if prefix.is_dir() else []:
            relative = path.relative_to(prefix)
            if any(part.startswith(".") for part in relative.parts):
                continue
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                found.append(StoredDataset(str(relative), info.st_size, datetime.fromtimestamp(info.st_mtime, UTC)))
        return found

    def delete(self, tenant: str, dataset: str) -> Path:
        """Remove a dataset the tenant named as :meth:`datasets` lists it; a symlink goes, never its target."""
        prefix = self.prefix(tenant)
        raw = check_dataset_text(dataset)
        candidate = Path(os.path.normpath(prefix / raw))
        if Path(raw).is_absolute() or not candidate.is_relative_to(prefix) or candidate == prefix:
            raise DatasetNotFound(dataset)
        if candidate.parent.resolve() != candidate.parent or any(p.startswith(".") for p in Path(raw).parts):
            raise DatasetNotFound(dataset)  # through a symlinked folder, or a platform file: not a listed dataset
        try:
            info = candidate.lstat()
        except OSError:
            raise DatasetNotFound(dataset) from None
        if stat.S_ISDIR(info.st_mode):
            raise DatasetNotFound(dataset)
        candidate.unlink()
        return candidate

    def open_upload(self, tenant: str, name: str, limit: int) -> Upload:
        """A new partial file in the tenant's prefix for the dataset ``name`` (a file name, never a path)."""
        prefix = self.prefix(tenant)
        prefix.mkdir(parents=True, exist_ok=True)
        destination = prefix / check_dataset_name(name)
        if destination.is_dir():
            raise InvalidRequest(f"invalid dataset name {name!r}: a folder has that name; choose another")
        return Upload(prefix / f"{UPLOAD_PREFIX}{uuid.uuid4().hex}-{name}", destination, limit)

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


def _check_plain_file(dataset: str, found: os.stat_result) -> None:
    """A dataset is one plain file: not a folder, FIFO, socket or device, and not a hard link."""
    if stat.S_ISDIR(found.st_mode):
        raise DatasetNotFound(dataset)
    if not stat.S_ISREG(found.st_mode):
        raise InvalidRequest(
            f"dataset {dataset!r} is not a plain file (a FIFO, socket or device): give a CSV or Parquet file"
        )
    if found.st_nlink > 1:  # a hard link can name another tenant's file under any path
        raise InvalidRequest(
            f"dataset {dataset!r} is a hard link: copy the file itself (hard links are refused so that no path "
            "inside a tenant's storage can name a file of another)"
        )


class Upload:
    """A dataset arriving in pieces: written to a partial file (created new, never through a link), at most
    ``limit`` bytes, and renamed onto its name only when complete, so a training never reads half of it."""

    def __init__(self, partial: Path, destination: Path, limit: int) -> None:
        self.partial, self.destination, self.limit = partial, destination, limit
        self.size = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self._file = os.fdopen(os.open(partial, flags, 0o600), "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.discard()
            raise PayloadTooLarge(self.limit, "dataset")
        self._file.write(chunk)

    def close(self) -> None:
        """No more bytes: the partial file is complete on disk (and may be read) but not yet the dataset."""
        self._file.close()

    def commit(self) -> Path:
        self._file.close()
        os.replace(self.partial, self.destination)
        return self.destination

    def discard(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)
