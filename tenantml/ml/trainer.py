"""The resumable trainer: a training cut into steps, advanced one at a time, pickled between them.

A subclass says how to build its estimator, how many steps a training takes and what one step
does; this base class checks the target, draws the validation split, counts the steps, measures,
and writes and checks the checkpoint. See :mod:`tenantml.ml.algorithms` for why resuming gives the
same model bit for bit.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from tenantml.errors import InvalidDataset, InvalidParameter
from tenantml.ml.dataset import TrainingData
from tenantml.ml.metrics import LEGACY_NAMES, evaluation_rows, loss_name, score
from tenantml.ml.params import Param, check_params
from tenantml.ml.split import check_split, split_rows

__all__ = ["Trainer"]

_CHECKPOINT_FORMAT = 1


def _same_classes(saved: np.ndarray | None, current: np.ndarray | None) -> bool:
    """Both regressors (no classes), or the same class labels in the same order."""
    if saved is None or current is None:
        return saved is None and current is None
    return bool(np.array_equal(saved, current))


class Trainer(ABC):
    """One training run, advanced step by step and resumable from ``state()``."""

    algorithm: ClassVar[str]
    task: ClassVar[str]
    PARAMS: ClassVar[Mapping[str, Param]]

    def __init__(self, params: Mapping[str, object], data: TrainingData) -> None:
        self.params = self.validate(params)
        self.data = data
        self.classes: np.ndarray | None = self._check_target(data)
        self.split = split_rows(data.n_rows, self.params["validation_fraction"], self.params["seed"])
        self._check_training_classes()
        self._completed = 0
        self._evaluation = (evaluation_rows(self.split.train), evaluation_rows(self.split.validation))
        self._estimator: BaseEstimator = self._build()

    @classmethod
    def validate(cls, params: Mapping[str, object]) -> dict[str, Any]:
        """Return the complete, typed parameters, or raise InvalidParameter."""
        return check_params(cls.algorithm, cls.PARAMS, params)

    @classmethod
    @abstractmethod
    def steps_for(cls, params: Mapping[str, Any], n_rows: int) -> int:
        """Steps of a training with these (validated) params on ``n_rows`` rows: known before any data is read."""

    @staticmethod
    def training_rows(params: Mapping[str, Any], n_rows: int) -> int:
        """Rows of ``n_rows`` a training learns from (InvalidParameter if the split leaves a side empty)."""
        return check_split(n_rows, params["validation_fraction"])

    @classmethod
    def parameter_count(cls, params: Mapping[str, Any], n_features: int, n_classes: int) -> int:
        """Weights the model will hold (0: not a weight-based model; trees are bounded by the checkpoint size)."""
        return 0

    @property
    def total_steps(self) -> int:
        """Number of steps of the whole training."""
        return self.steps_for(self.params, self.data.n_rows)

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    @abstractmethod
    def _build(self) -> BaseEstimator:
        """Create the unfitted estimator."""

    @abstractmethod
    def _step(self, step: int) -> None:
        """Run step number ``step`` on ``self._estimator``."""

    @property
    def completed_steps(self) -> int:
        """Steps run so far (0 before the first ``advance``)."""
        return self._completed

    @property
    def estimator(self) -> BaseEstimator:
        """The estimator trained so far; available after the first step."""
        if self._completed == 0:
            raise RuntimeError(f"{self.algorithm}: no step has run yet; call advance() first")
        return self._estimator

    @property
    def loss(self) -> str:
        """Which loss the ``*_loss`` metrics are: ``log_loss``, ``hinge`` or ``mse``."""
        return loss_name(self.task, self._estimator)

    def advance(self) -> None:
        """Run the next step (measuring is separate: ``evaluate``, when the caller wants a point)."""
        if self._completed >= self.total_steps:
            raise RuntimeError(f"{self.algorithm}: all {self.total_steps} steps are already done")
        try:
            self._step(self._completed)
        except (ArithmeticError, ValueError) as err:  # the same data and params fail the same way again
            raise _numeric_failure(self.algorithm, self._completed, err) from None
        self._completed += 1

    def evaluate(self) -> dict[str, float]:
        """``train_*`` and ``validation_*`` metrics on fixed subsets of each side (a point of the curves)."""
        return self._metrics(*self._evaluation)

    def final_metrics(self) -> dict[str, float]:
        """The metrics on all rows of each side, with the names of before the split (``accuracy``: training rows)."""
        metrics = self._metrics(self.split.train, self.split.validation)
        return metrics | {old: metrics[new] for old, new in LEGACY_NAMES.items() if new in metrics}

    def state(self) -> bytes:
        """Everything needed to resume, pickled (the checkpoint)."""
        saved = {"format": _CHECKPOINT_FORMAT, "algorithm": self.algorithm, "params": self.params}
        saved |= {"shape": self.data.features.shape, "classes": self.classes}
        saved |= {"completed_steps": self._completed, "estimator": self._estimator}
        return pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Take back a ``state()`` of this algorithm, params and data shape; ValueError otherwise.

        Only restore checkpoints this platform wrote: unpickling runs code.
        """
        try:
            saved = pickle.loads(blob)
        except Exception as err:
            raise ValueError(f"{self.algorithm}: checkpoint cannot be read ({err}); start over") from err
        if not isinstance(saved, dict) or saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{self.algorithm}: not a tenantml checkpoint (format {_CHECKPOINT_FORMAT})")
        if saved["algorithm"] != self.algorithm:
            raise ValueError(
                f"checkpoint is of algorithm {saved['algorithm']!r}, not {self.algorithm!r}: "
                "restore it with a trainer of the same algorithm"
            )
        # A checkpoint of a training admitted before the validation split trained on every row.
        if {"validation_fraction": 0.0, **saved["params"]} != self.params:
            raise ValueError(f"{self.algorithm}: checkpoint params {saved['params']} differ from {self.params}")
        if saved["shape"] != self.data.features.shape or not _same_classes(saved["classes"], self.classes):
            raise ValueError(f"{self.algorithm}: checkpoint was made on other data (shape {saved['shape']})")
        self._completed = int(saved["completed_steps"])
        self._estimator = saved["estimator"]

    def _check_target(self, data: TrainingData) -> np.ndarray | None:
        """Return the sorted classes (None for regression) or raise InvalidDataset."""
        target, name = data.target, data.target_name
        if self.task == "regression":
            if target.dtype.kind not in "iuf":
                raise InvalidDataset(
                    f"{self.algorithm} predicts numbers but target {name!r} holds text labels "
                    f"({target.dtype} values): choose a classifier or a numeric target"
                )
            return None
        if target.dtype.kind == "f" and not np.all(np.mod(target, 1) == 0):
            fractional = int(np.count_nonzero(np.mod(target, 1) != 0))
            raise InvalidDataset(  # no row values: they reach logs and Prefect state messages
                f"{self.algorithm} predicts classes but target {name!r} is continuous ({fractional} of "
                f"{len(target)} values have a fractional part): choose a regressor or round the target into classes"
            )
        classes = np.unique(target)
        if len(classes) < 2:
            raise InvalidDataset(
                f"target {name!r} has a single class in all {len(target)} rows: classification needs at least two"
            )
        return classes

    def _check_training_classes(self) -> None:
        """A classifier must see two classes in its training rows, not only in the whole table."""
        if self.classes is None or len(np.unique(self.data.target[self.split.train])) >= 2:
            return
        raise InvalidDataset(
            f"target {self.data.target_name!r} has a single class in the {len(self.split.train)} training rows left "
            f"after holding out validation_fraction={self.params['validation_fraction']:g}: give more rows of "
            "each class, or a lower validation_fraction"
        )

    def _metrics(self, train: np.ndarray, validation: np.ndarray) -> dict[str, float]:
        features, target, estimator = self.data.features, self.data.target, self.estimator
        metrics = score(estimator, self.task, self.classes, features[train], target[train], "train")
        return metrics | score(estimator, self.task, self.classes, features[validation], target[validation],
                               "validation")


def _numeric_failure(algorithm: str, step: int, err: BaseException) -> InvalidParameter | InvalidDataset:
    """A library's failure inside a step, as a user error that names its kind and never a row value."""
    text = str(err).lower()
    if isinstance(err, ArithmeticError) or any(word in text for word in ("overflow", "infinity", "nan")):
        return InvalidParameter(
            f"{algorithm}: training diverged at step {step} (numbers grew past the floating-point range, "
            f"{type(err).__name__}): lower the learning rate (eta0, learning_rate_init) or alpha"
        )
    return InvalidDataset(
        f"{algorithm} cannot train on this data (step {step}, {type(err).__name__} from scikit-learn): "
        "check the target and feature columns"
    )
