"""Training parameters: declared per algorithm, coerced from command-line strings, checked early.

Submission calls these without any data, so a bad parameter fails before anything is queued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from tenantml.errors import InvalidParameter, did_you_mean

__all__ = ["MAX_EPOCHS", "MAX_LAYERS", "MAX_LAYER_UNITS", "MAX_TREES", "Param", "check_params"]

# Upper bounds: a training must end in a time and a checkpoint size a worker can hold. Without them
# epochs=1000000000 meant 8 billion steps, eta0=1e308 an overflow on the first step, and
# hidden_layer_sizes=100000,100000 a 74.5 GiB allocation retried on every worker class.
MAX_EPOCHS = 100_000  # the recovery benchmark trains for 100,000 epochs of 79 steps
MAX_TREES = 10_000
MAX_LAYER_UNITS = 4_096
MAX_LAYERS = 8

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Param:
    """Declaration of one parameter: its type, default and allowed values.

    ``kind`` is ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (a tuple of
    positive ints, written ``"64,32"`` on a command line). ``minimum`` is
    inclusive unless ``exclusive``; ``nullable`` lets ``None`` (``"none"``) through.
    """

    kind: type
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    nullable: bool = False
    max_items: int | None = None  # for a tuple: how many numbers at most

    def describe(self) -> str:
        """Say in words what values are allowed."""
        if self.choices:
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        if self.kind is tuple:
            text = "comma-separated positive integers such as '64,32'"
            if self.maximum is not None:
                text += f", each <= {self.maximum:g}"
            return text + (f", at most {self.max_items} of them" if self.max_items is not None else "")
        text = {int: "an integer", float: "a number", bool: "true or false"}.get(self.kind, "a string")
        if self.minimum is not None:
            text += f" {'>' if self.exclusive else '>='} {self.minimum:g}"
        if self.maximum is not None:
            text += f" and <= {self.maximum:g}"
        return text + (" or 'none'" if self.nullable else "")

    def coerce(self, value: object) -> Any:
        """Return ``value`` converted to this parameter's type; ValueError if it cannot be."""
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
            if self.nullable:
                return None
            raise ValueError("no value")
        if self.kind is tuple:
            parts = value.strip("()[] ").split(",") if isinstance(value, str) else value
            parts = parts if isinstance(parts, list | tuple) else [parts]
            result: Any = tuple(_convert(int, part) for part in parts)
        else:
            result = _convert(self.kind, value)
        if self.choices and result not in self.choices or result == ():
            raise ValueError("not an allowed value")
        if self.max_items is not None and isinstance(result, tuple) and len(result) > self.max_items:
            raise ValueError("too many values")
        for number in result if isinstance(result, tuple) else (result,):
            if self.minimum is not None and (number < self.minimum or self.exclusive and number == self.minimum):
                raise ValueError("too small")
            if self.maximum is not None and number > self.maximum:
                raise ValueError("too large")
        return result


def _convert(kind: type, value: object) -> Any:
    """Convert one scalar (possibly a command-line string) to ``kind``; ValueError if it cannot be."""
    text = value.strip().lower() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool | np.bool_) or (isinstance(value, Integral) and value in (0, 1)):
            return bool(value)
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif isinstance(value, bool | np.bool_):
        pass  # True is not the number 1 here
    elif kind is int and isinstance(value, Integral):
        return int(value)
    elif kind is int and isinstance(value, Real) and float(value).is_integer():
        return int(float(value))
    elif kind is int and text is not None:
        return int(text)
    elif kind is float and text is not None and math.isfinite(number := float(text)):
        return number
    elif kind is float and isinstance(value, Real) and math.isfinite(number := float(value)):
        return number
    elif kind is str and isinstance(value, str):
        return value.strip()
    raise ValueError(f"not {kind.__name__}")


def check_params(algorithm: str, declared: Mapping[str, Param], params: Mapping[str, object]) -> dict[str, Any]:
    """Coerce ``params`` against ``declared``, fill in defaults, raise InvalidParameter on error."""
    allowed = ", ".join(sorted(declared))
    result = {key: spec.default for key, spec in declared.items()}
    for key, value in params.items():
        spec = declared.get(key)
        if spec is None:
            raise InvalidParameter(f"{algorithm}: unknown parameter {key!r}{did_you_mean(key, declared)}; "
                                   f"allowed parameters: {allowed}")
        try:
            result[key] = spec.coerce(value)
        except (TypeError, ValueError) as err:
            raise InvalidParameter(
                f"{algorithm}: parameter {key!r} must be {spec.describe()}, got {value!r}"
            ) from err
    return result
