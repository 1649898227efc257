"""Reading a tenant's table and turning it into arrays a trainer can use.

``read_table`` and ``read_columns`` translate pandas/pyarrow failures into
tenantml errors; ``prepare`` checks that the table can be trained on and names
the offending column or value when it cannot.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tenantml.errors import DatasetNotFound, InvalidDataset

__all__ = [
    "SUPPORTED_SUFFIXES",
    "TrainingData",
    "fingerprint_file",
    "measure_file",
    "prepare",
    "read_columns",
    "read_table",
]

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES

_CHUNK = 1024 * 1024
_MAX_LISTED = 20


@dataclass(frozen=True)
class TrainingData:
    """Features and target of one dataset, ready for a trainer.

    ``features`` is a 2-D float64 array (booleans become 0.0/1.0); ``target`` is
    numeric, or an object array of ``str`` labels for classification.
    ``feature_types`` holds the pandas dtype name of each original column.
    """

    features: np.ndarray
    target: np.ndarray
    feature_names: tuple[str, ...]
    feature_types: tuple[str, ...]
    target_name: str

    @property
    def n_rows(self) -> int:
        """Number of rows (samples)."""
        return int(self.features.shape[0])


def _checked_file(path: str | Path) -> tuple[Path, str]:
    """Return the path and its lower-case suffix, or raise if it cannot be read."""
    file = Path(path)
    if not file.exists():
        raise DatasetNotFound(str(path))
    if file.is_dir():
        raise InvalidDataset(f"dataset {str(path)!r} is a directory: give the path of one CSV or Parquet file")
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InvalidDataset(
            f"dataset {str(path)!r} has unsupported suffix {file.suffix!r}: "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return file, suffix


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file, chosen by suffix."""
    file, suffix = _checked_file(path)
    try:
        if suffix in CSV_SUFFIXES:
            return pd.read_csv(file)
        # Arrow starts its pools' threads lazily, and a thread it cannot start under a worker class's
        # address-space limit aborts the process (std::system_error, SIGABRT) instead of raising
        # MemoryError, so the failure could not escalate. Read on one thread, without pre-buffering:
        # that needs a single I/O thread, which tenantml.adapters.worker_limits starts beforehand.
        return pd.read_parquet(file, use_threads=False, pre_buffer=False, to_pandas_kwargs={"use_threads": False})
    except (MemoryError, pa.ArrowMemoryError) as err:  # a resource failure, not a bad dataset
        raise MemoryError(f"reading dataset {str(path)!r}: {err}") from err
    except Exception as err:  # pandas and pyarrow raise many unrelated types
        raise InvalidDataset(
            f"dataset {str(path)!r} cannot be read as {suffix[1:]} ({type(err).__name__}: {err}): "
            "check that the file is a valid, non-empty table"
        ) from err


def _csv_header(file: Path, max_header_bytes: int) -> list[str]:
    """The first line of a CSV file, read in bounded memory: at most ``max_header_bytes``."""
    with file.open("rb") as stream:
        head = stream.read(max_header_bytes + 1)
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) > max_header_bytes:
        raise InvalidDataset(
            f"dataset {str(file)!r} has no line break in its first {max_header_bytes} bytes: a CSV header that "
            "long is refused (TENANTML_LIMITS__MAX_HEADER_BYTES); check that the file is a CSV table"
        )
    if not line.strip():
        raise InvalidDataset(f"dataset {str(file)!r} has no header line: put the column names on the first line")
    try:
        return next(csv.reader([line.decode("utf-8-sig").rstrip("\r")]))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InvalidDataset(f"dataset {str(file)!r} has a header that is not UTF-8 CSV ({err})") from err


def read_columns(path: str | Path, max_header_bytes: int = 1024**2) -> list[str]:
    """Return the column names of a table, reading only its header (bounded) or schema."""
    file, suffix = _checked_file(path)
    try:
        if suffix in CSV_SUFFIXES:
            return _csv_header(file, max_header_bytes)
        schema = pq.read_schema(file)
    except InvalidDataset:
        raise
    except Exception as err:
        raise InvalidDataset(
            f"dataset {str(path)!r} cannot be read as {suffix[1:]} ({type(err).__name__}: {err}): "
            "check that the file is a valid, non-empty table"
        ) from err
    # A pandas index saved into the file is a column of the schema but not of the frame.
    metadata = schema.pandas_metadata or {}
    index_columns = {name for name in metadata.get("index_columns", []) if isinstance(name, str)}
    return [name for name in schema.names if name not in index_columns]


def _listing(names: list[str]) -> str:
    """Quote names for a message, truncated after ``_MAX_LISTED``."""
    shown = ", ".join(repr(name) for name in names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown


def _is_feature_dtype(dtype: object) -> bool:
    """True for real numeric and boolean dtypes (complex numbers are refused)."""
    return pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    )


def _target_array(column: pd.Series) -> np.ndarray:
    """Numeric targets keep a numeric dtype; anything else becomes ``str`` labels."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return column.to_numpy(dtype=np.int64)
    if _is_feature_dtype(dtype):
        return column.to_numpy(dtype=np.float64)
    return np.asarray(column.astype(str).to_numpy(), dtype=object)


def prepare(frame: pd.DataFrame, target: str) -> TrainingData:
    """Split ``frame`` into numeric features and the ``target`` column.

    Raises InvalidDataset when the frame has no rows, the target column is
    missing, no feature column is left, a feature is not numeric or boolean,
    or a feature or the target has missing or infinite values.
    """
    columns = [str(name) for name in frame.columns]
    if len(frame) == 0:
        raise InvalidDataset("dataset has no rows: add at least one row besides the header")
    if target not in columns:
        raise InvalidDataset(
            f"target column {target!r} is not in the dataset; available columns: {_listing(columns)}"
        )
    duplicated = sorted(name for name, count in Counter(columns).items() if count > 1)  # linear, not quadratic
    if duplicated:
        raise InvalidDataset(f"dataset has duplicated column names: {_listing(duplicated)}: rename them")
    frame = frame.set_axis(columns, axis=1)
    feature_names = [name for name in columns if name != target]
    if not feature_names:
        raise InvalidDataset(f"dataset has only the target column {target!r}: add at least one feature column")

    features_frame = frame[feature_names]
    non_numeric = [
        f"{name!r} ({dtype})"
        for name, dtype in zip(feature_names, features_frame.dtypes, strict=True)
        if not _is_feature_dtype(dtype)
    ]
    if non_numeric:
        raise InvalidDataset(
            f"feature columns must be numeric; non-numeric: {', '.join(non_numeric[:_MAX_LISTED])}"
            + (f", ... ({len(non_numeric) - _MAX_LISTED} more)" if len(non_numeric) > _MAX_LISTED else "")
            + ": encode them as numbers or drop them"
        )

    missing = frame.isna().any()
    with_missing = [name for name in columns if missing[name]]
    if with_missing:
        raise InvalidDataset(
            f"dataset has missing values (NaN) in columns: {_listing(with_missing)}: fill or drop those rows"
        )

    features = features_frame.to_numpy(dtype=np.float64)
    infinite = np.isinf(features).any(axis=0)
    if infinite.any():
        bad = [name for name, flag in zip(feature_names, infinite, strict=True) if flag]
        raise InvalidDataset(f"dataset has infinite values in columns: {_listing(bad)}: replace them")
    target_values = _target_array(frame[target])
    if target_values.dtype == np.float64 and np.isinf(target_values).any():
        raise InvalidDataset(f"dataset has infinite values in target column {target!r}: replace them")

    return TrainingData(
        features=features,
        target=target_values,
        feature_names=tuple(feature_names),
        feature_types=tuple(str(dtype) for dtype in features_frame.dtypes),
        target_name=target,
    )


def fingerprint_file(path: str | Path) -> str:
    """Return the sha256 hex digest of the file's bytes, read in 1 MiB chunks."""
    return _scan(path)[0]


def measure_file(path: str | Path) -> tuple[str, int]:
    """The file's sha256 hex digest and its rows, in one pass over it.

    Rows are a Parquet file's own count, or a CSV file's lines after the header: an upper bound
    (a quoted field may hold a line break, a blank line is skipped by the reader) that needs no parsing.
    """
    digest, lines = _scan(path)
    if Path(path).suffix.lower() not in PARQUET_SUFFIXES:
        return digest, max(lines - 1, 0)
    try:
        return digest, int(pq.read_metadata(path).num_rows)
    except Exception as err:
        raise InvalidDataset(
            f"dataset {str(path)!r} cannot be read as parquet ({type(err).__name__}): check that the file is valid"
        ) from err


def _scan(path: str | Path) -> tuple[str, int]:
    """sha256 hex digest and line count (a last line without a line break counts) of a file."""
    file = Path(path)
    if not file.is_file():
        raise DatasetNotFound(str(path))
    digest = hashlib.sha256()
    lines, last = 0, b"\n"
    with file.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return digest.hexdigest(), lines + (last != b"\n")
