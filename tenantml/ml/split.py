"""The validation split: which rows a training learns from, and which it is only measured on.

The split is a pure function of the row count, ``validation_fraction`` and ``seed``: every
attempt of a request, on any worker, draws the same rows, so a resumed training goes on with the
rows it started with and stays bit for bit the model of an uninterrupted run. Its size is a
function of the row count alone, so the number of steps is known at submission, before any data
is read. Rows are drawn at random rather than by position: a file sorted by date or by label would
otherwise be validated on its last, least typical rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tenantml.errors import InvalidParameter
from tenantml.ml.params import Param

__all__ = ["VALIDATION_FRACTION", "Split", "check_split", "split_rows", "validation_count"]

MAX_VALIDATION_FRACTION = 0.5
VALIDATION_FRACTION = Param(float, 0.2, minimum=0, maximum=MAX_VALIDATION_FRACTION)
"""Share of the rows held out to measure the model on rows it never learned from (0: none)."""

_SPLIT_STREAM = 2**32 - 1
"""Second word of the split's random seed: no epoch's row order (``(seed, epoch)``) draws the same numbers."""


@dataclass(frozen=True)
class Split:
    """Row indices, each sorted: the rows a training learns from and the rows it is validated on."""

    train: np.ndarray
    validation: np.ndarray


def validation_count(n_rows: int, fraction: float) -> int:
    """Rows held out of ``n_rows`` for validation: ``fraction`` of them, rounded half up."""
    return math.floor(n_rows * fraction + 0.5) if fraction > 0 else 0


def check_split(n_rows: int, fraction: float, dataset: str = "the dataset") -> int:
    """Rows a training learns from; InvalidParameter when ``fraction`` leaves no row on one side.

    A dataset without rows passes: reading it says so in its own words.
    """
    held_out = validation_count(n_rows, fraction)
    if n_rows == 0 or fraction == 0:
        return n_rows
    if held_out == 0:
        needed = math.ceil(0.5 / fraction)
        raise InvalidParameter(
            f"{dataset} has {n_rows} rows: validation_fraction={fraction:g} holds out none of them; "
            f"give at least {needed} rows, or validation_fraction=0 to train on all rows without validation"
        )
    if held_out >= n_rows:
        raise InvalidParameter(
            f"{dataset} has {n_rows} row{'s' if n_rows > 1 else ''}: validation_fraction={fraction:g} leaves none "
            "to train on; give more rows, or validation_fraction=0 to train on all rows without validation"
        )
    return n_rows - held_out


def split_rows(n_rows: int, fraction: float, seed: int) -> Split:
    """The split of ``n_rows`` rows (:func:`check_split` first), the same for the same arguments."""
    check_split(n_rows, fraction)
    held_out = validation_count(n_rows, fraction)
    if held_out == 0:
        return Split(np.arange(n_rows, dtype=np.int64), np.empty(0, dtype=np.int64))
    order = np.random.default_rng((seed, _SPLIT_STREAM)).permutation(n_rows)
    return Split(np.sort(order[held_out:]), np.sort(order[:held_out]))
