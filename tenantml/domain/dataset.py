"""A dataset as a tenant sees it in its storage, and the names a tenant may give an uploaded one.

An upload names a file, never a path: one component of letters, digits, ``_``, ``-`` and ``.``,
not hidden, so that it cannot climb out of the tenant's prefix, land in a folder, or hide beside
the platform's own partial files (``.upload-*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from tenantml.errors import InvalidRequest

__all__ = ["StoredDataset", "check_dataset_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class StoredDataset:
    """One file in a tenant's storage: the name ``--dataset`` takes, its size and when it was written."""

    name: str
    size: int
    modified_at: datetime


def check_dataset_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidRequest(
            f"invalid dataset name {name[:140]!r}: name a file, not a path: 1-128 letters, digits, '_', '-' and "
            "'.', starting with a letter or digit, such as 'churn.csv'"
        )
    return name
