"""The feature schema of a registered model, and the check of request rows against it.

A model version carries its schema in the ``tenantml.features`` tag: a JSON list of
``[name, pandas dtype]`` pairs in training order. Rows are JSON objects; each must hold exactly
those features, each of a type its dtype accepts. The result is a matrix of floats in schema
order, the way the model was trained (booleans as 0.0/1.0).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tenantml.errors import InvalidPayload

__all__ = ["Feature", "FeatureSchema", "Kind", "kind_of_dtype"]

_MAX_NAMED = 10


class Kind(enum.Enum):
    """What a JSON value must be for a feature of some dtype."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"


def kind_of_dtype(dtype: str) -> Kind:
    """The kind of a pandas (or numpy) dtype name: ``bool`` → boolean, ``int64`` → integer, else number."""
    lowered = dtype.lower()
    if lowered.startswith("bool"):
        return Kind.BOOLEAN
    if lowered.startswith(("int", "uint")):
        return Kind.INTEGER
    return Kind.NUMBER


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str

    @property
    def kind(self) -> Kind:
        return kind_of_dtype(self.dtype)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(repr(name) for name in ordered[:_MAX_NAMED])
    return shown + (f", ... ({len(ordered) - _MAX_NAMED} more)" if len(ordered) > _MAX_NAMED else "")


def _number(value: object, field: str) -> float:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(field, "must be a finite number, got NaN or infinity")
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # JSON true is not the number 1
        return float(value)
    raise InvalidPayload(field, f"must be a number, got {_json_type(value)}")


def _integer(value: object, field: str) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return value
    got = "a fractional number" if isinstance(value, float) else _json_type(value)
    raise InvalidPayload(field, f"must be an integer, got {got}")


def _boolean(value: object, field: str) -> float:
    if value is True:
        return 1.0
    if value is False:
        return 0.0
    raise InvalidPayload(field, f"must be true or false, got {_json_type(value)}")


_CONVERTERS = {Kind.NUMBER: _number, Kind.INTEGER: _integer, Kind.BOOLEAN: _boolean}


class FeatureSchema:
    """The features a model takes, in order; turns request rows into a float matrix or says what is wrong."""

    def __init__(self, features: Sequence[Feature]) -> None:
        if not features:
            raise ValueError("a feature schema needs at least one feature")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicated feature names in schema: {_listing({n for n in names if names.count(n) > 1})}")
        self.features = tuple(features)
        self.names = tuple(names)
        self._keys = frozenset(names)
        self._converters = tuple((f.name, _CONVERTERS[f.kind]) for f in features)

    @classmethod
    def from_pairs(cls, pairs: Iterable[Sequence[str]]) -> FeatureSchema:
        return cls([Feature(str(name), str(dtype)) for name, dtype in pairs])

    @classmethod
    def from_tag(cls, value: str) -> FeatureSchema:
        """Read the ``tenantml.features`` tag: ``[["age", "int64"], ["income", "float64"], ...]``."""
        try:
            pairs = json.loads(value)
            if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise ValueError("expected a list of [name, dtype] pairs")
            return cls.from_pairs(pairs)
        except ValueError as err:
            raise ValueError(f"invalid tenantml.features tag: {err}") from err

    def to_tag(self) -> str:
        return json.dumps([[f.name, f.dtype] for f in self.features])

    def describe(self) -> dict[str, str]:
        """Feature name → JSON kind, for error messages and documentation."""
        return {f.name: f.kind.value for f in self.features}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSchema) and other.features == self.features

    def __hash__(self) -> int:
        return hash(self.features)

    def __repr__(self) -> str:
        return f"FeatureSchema({[(f.name, f.dtype) for f in self.features]!r})"

    def matrix(self, rows: object) -> list[list[float]]:
        """Rows (a JSON list of objects) as a matrix in schema order; InvalidPayload names the first bad field."""
        if not isinstance(rows, list):
            raise InvalidPayload("rows", f"must be a list of objects, got {_json_type(rows)}")
        if not rows:
            raise InvalidPayload("rows", "is empty: send at least one row")
        keys, converters = self._keys, self._converters
        matrix: list[list[float]] = []
        for index, row in enumerate(rows):
            if type(row) is not dict:
                raise InvalidPayload(f"rows[{index}]", f"must be an object of feature values, got {_json_type(row)}")
            if row.keys() != keys:
                self._refuse_keys(index, row)
            values = []
            for name, convert in converters:
                value = row[name]
                kind = type(value)
                if kind is float and convert is _number and math.isfinite(value):
                    values.append(value)
                else:
                    values.append(convert(value, f"rows[{index}].{name}"))
            matrix.append(values)
        return matrix

    def _refuse_keys(self, index: int, row: dict[str, object]) -> None:
        missing = self._keys - row.keys()
        if missing:
            raise InvalidPayload(
                f"rows[{index}].{min(missing)}",
                f"missing feature(s) {_listing(missing)}; the model takes {_listing(self.names)}",
            )
        extra = {str(name) for name in row.keys() - self._keys}
        raise InvalidPayload(
            f"rows[{index}].{min(extra)}",
            f"unexpected feature(s) {_listing(extra)}; the model takes {_listing(self.names)}",
        )
