"""Resumable, deterministic, incremental training algorithms.

A training is cut into a fixed number of steps; ``Trainer.advance`` runs the next
one, ``Trainer.state`` pickles everything needed to go on and ``Trainer.restore``
takes it back. Restoring after any step and continuing gives the same model, bit
for bit, as an uninterrupted run: every random choice comes from the ``seed``
parameter and the step number, or lives in the pickled estimator; so do the rows
held out for validation (:mod:`tenantml.ml.split`). Trainers read no clock: the caller
decides when to checkpoint and when to measure (``evaluate``, :mod:`tenantml.ml.metrics`).
Bit-for-bit holds for one installation (numpy/scikit-learn builds, CPU kind); it does
not depend on the number of threads.

Linear and neural models come in a ``Pipeline`` after a ``StandardScaler``
fitted on the training rows, because gradient descent needs scaled features.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tenantml.errors import UnknownAlgorithm
from tenantml.ml.dataset import TrainingData
from tenantml.ml.params import MAX_EPOCHS, MAX_LAYER_UNITS, MAX_LAYERS, MAX_TREES, Param
from tenantml.ml.split import VALIDATION_FRACTION
from tenantml.ml.trainer import Trainer

__all__ = [
    "ALGORITHMS",
    "HistGradientBoostingTrainer",
    "MLPClassifierTrainer",
    "Param",
    "RandomForestTrainer",
    "SGDClassifierTrainer",
    "SGDRegressorTrainer",
    "Trainer",
    "trainer_class",
    "trainer_for",
    "validate_params",
]

_MAX_SEED = 2**32 - 1


class _MiniBatchTrainer(Trainer):
    """Epochs of mini-batches fed to ``partial_fit``; row order per epoch from ``(seed, epoch)``."""

    def __init__(self, params: Mapping[str, object], data: TrainingData) -> None:
        super().__init__(params, data)
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.split.train) / self.params["batch_size"])

    @classmethod
    def steps_for(cls, params: Mapping[str, Any], n_rows: int) -> int:
        return int(params["epochs"]) * math.ceil(cls.training_rows(params, n_rows) / params["batch_size"])

    @abstractmethod
    def _model(self) -> BaseEstimator:
        """The unfitted estimator that learns with ``partial_fit``."""

    def _build(self) -> BaseEstimator:
        scaler = StandardScaler().fit(self.data.features[self.split.train])
        return Pipeline([("scale", scaler), ("model", self._model())])

    def _rows(self, step: int) -> np.ndarray:
        epoch, batch = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            seed = (self.params["seed"], epoch)
            train = self.split.train  # all rows when nothing is held out: the order of before the split
            self._order = train[np.random.default_rng(seed).permutation(len(train))]
            self._order_epoch = epoch
        size = self.params["batch_size"]
        return self._order[batch * size : (batch + 1) * size]

    def _step(self, step: int) -> None:
        rows = self._rows(step)
        scaler, model = self._estimator[0], self._estimator[-1]
        features = scaler.transform(self.data.features[rows])
        self._partial_fit(model, features, self.data.target[rows], first=step == 0)

    def _partial_fit(self, model: Any, features: np.ndarray, target: np.ndarray, first: bool) -> None:
        extra = {"classes": self.classes} if self.task == "classification" and first else {}
        model.partial_fit(features, target, **extra)


_EPOCHS = Param(int, 5, minimum=1, maximum=MAX_EPOCHS)
_BATCH_SIZE = Param(int, 256, minimum=1, maximum=1_000_000)
_SEED = Param(int, 0, minimum=0, maximum=_MAX_SEED)
_EVERY_ALGORITHM = {"seed": _SEED, "validation_fraction": VALIDATION_FRACTION}
_MAX_DEPTH = Param(int, None, minimum=1, maximum=1_000, nullable=True)
_TREES_PER_STEP = Param(int, 10, minimum=1, maximum=1_000)
_SGD_SCHEDULES = ("optimal", "constant", "invscaling", "adaptive")
_SGD_REGRESSION_LOSSES = ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive")
_SGD_COMMON = {
    "alpha": Param(float, 1e-4, minimum=0, maximum=1_000, exclusive=True),
    "batch_size": _BATCH_SIZE,
    "epochs": _EPOCHS,
    "eta0": Param(float, 0.01, minimum=0, maximum=100, exclusive=True),
    "fit_intercept": Param(bool, True),
    "penalty": Param(str, "l2", choices=("l2", "l1", "elasticnet")),
    **_EVERY_ALGORITHM,
}


class _SGDTrainer(_MiniBatchTrainer):
    """Linear models by stochastic gradient descent, one ``partial_fit`` per mini-batch."""

    def _model(self) -> BaseEstimator:
        p = self.params
        model = SGDClassifier if self.task == "classification" else SGDRegressor
        return model(
            loss=p["loss"], penalty=p["penalty"], alpha=p["alpha"], fit_intercept=p["fit_intercept"],
            learning_rate=p["learning_rate"], eta0=p["eta0"], shuffle=False, random_state=p["seed"],
        )  # fmt: skip


    @classmethod
    def parameter_count(cls, params: Mapping[str, Any], n_features: int, n_classes: int) -> int:
        outputs = n_classes if n_classes > 2 else 1  # one-vs-rest above two classes
        return (n_features + 1) * outputs


class SGDClassifierTrainer(_SGDTrainer):
    """Linear classifier by stochastic gradient descent (``SGDClassifier``)."""

    algorithm = "sgd_classifier"
    task = "classification"
    PARAMS = {
        **_SGD_COMMON,
        "learning_rate": Param(str, "optimal", choices=_SGD_SCHEDULES),
        "loss": Param(str, "log_loss", choices=("log_loss", "hinge", "modified_huber", "squared_hinge", "perceptron")),
    }


class SGDRegressorTrainer(_SGDTrainer):
    """Linear regression by stochastic gradient descent (``SGDRegressor``)."""

    algorithm = "sgd_regressor"
    task = "regression"
    PARAMS = {
        **_SGD_COMMON,
        "learning_rate": Param(str, "invscaling", choices=_SGD_SCHEDULES),
        "loss": Param(str, "squared_error", choices=_SGD_REGRESSION_LOSSES),
    }


class MLPClassifierTrainer(_MiniBatchTrainer):
    """Neural network classifier (``MLPClassifier``, Adam), one gradient step per mini-batch."""

    algorithm = "mlp_classifier"
    task = "classification"
    PARAMS = {
        "activation": Param(str, "relu", choices=("relu", "tanh", "logistic", "identity")),
        "alpha": Param(float, 1e-4, minimum=0, maximum=1_000),
        "batch_size": _BATCH_SIZE,
        "epochs": Param(int, 10, minimum=1, maximum=MAX_EPOCHS),
        "hidden_layer_sizes": Param(tuple, (64,), minimum=1, maximum=MAX_LAYER_UNITS, max_items=MAX_LAYERS),
        "learning_rate_init": Param(float, 1e-3, minimum=0, maximum=100, exclusive=True),
        **_EVERY_ALGORITHM,
    }

    @classmethod
    def parameter_count(cls, params: Mapping[str, Any], n_features: int, n_classes: int) -> int:
        sizes = [n_features, *params["hidden_layer_sizes"], n_classes if n_classes > 2 else 1]
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))

    def _model(self) -> BaseEstimator:
        p = self.params
        return MLPClassifier(
            hidden_layer_sizes=p["hidden_layer_sizes"], activation=p["activation"], solver="adam",
            alpha=p["alpha"], learning_rate_init=p["learning_rate_init"], shuffle=False,
            random_state=p["seed"],
        )  # fmt: skip

    def _partial_fit(self, model: Any, features: np.ndarray, target: np.ndarray, first: bool) -> None:
        # One Adam update per step: the model's own batch is the whole mini-batch.
        model.set_params(batch_size=len(features))
        super()._partial_fit(model, features, target, first)


class _GrowingEnsembleTrainer(Trainer):
    """Warm-started ensembles: step k fits up to ``(k + 1) * trees_per_step`` trees."""

    size_param: ClassVar[str]

    @classmethod
    def steps_for(cls, params: Mapping[str, Any], n_rows: int) -> int:
        cls.training_rows(params, n_rows)  # the same refusal as the mini-batch trainers for a split that cannot be
        return math.ceil(params[cls.size_param] / params["trees_per_step"])

    def _step(self, step: int) -> None:
        size = min((step + 1) * self.params["trees_per_step"], self.params[self.size_param])
        self._estimator.set_params(**{self.size_param: size})
        train = self.split.train
        self._estimator.fit(self.data.features[train], self.data.target[train])


class HistGradientBoostingTrainer(_GrowingEnsembleTrainer):
    """Gradient boosted trees (``HistGradientBoostingClassifier``, warm start, no early stopping)."""

    algorithm = "hist_gradient_boosting_classifier"
    task = "classification"
    size_param = "max_iter"
    PARAMS = {
        "learning_rate": Param(float, 0.1, minimum=0, maximum=100, exclusive=True),
        "max_depth": _MAX_DEPTH,
        "max_iter": Param(int, 100, minimum=1, maximum=MAX_TREES),
        **_EVERY_ALGORITHM,
        "trees_per_step": _TREES_PER_STEP,
    }

    def _build(self) -> BaseEstimator:
        p = self.params
        return HistGradientBoostingClassifier(
            learning_rate=p["learning_rate"], max_depth=p["max_depth"], max_iter=p["trees_per_step"],
            early_stopping=False, warm_start=True, random_state=p["seed"],
        )  # fmt: skip


class RandomForestTrainer(_GrowingEnsembleTrainer):
    """Random forest (``RandomForestClassifier``, warm start, one job)."""

    algorithm = "random_forest_classifier"
    task = "classification"
    size_param = "n_estimators"
    PARAMS = {
        "bootstrap": Param(bool, True),
        "max_depth": _MAX_DEPTH,
        "n_estimators": Param(int, 100, minimum=1, maximum=MAX_TREES),
        **_EVERY_ALGORITHM,
        "trees_per_step": _TREES_PER_STEP,
    }

    def _build(self) -> BaseEstimator:
        p = self.params
        return RandomForestClassifier(
            n_estimators=p["trees_per_step"], max_depth=p["max_depth"], bootstrap=p["bootstrap"],
            warm_start=True, n_jobs=1, random_state=p["seed"],
        )  # fmt: skip


_TRAINERS = (SGDClassifierTrainer, SGDRegressorTrainer, MLPClassifierTrainer)
ALGORITHMS: dict[str, type[Trainer]] = {
    trainer.algorithm: trainer for trainer in (*_TRAINERS, HistGradientBoostingTrainer, RandomForestTrainer)
}


def _trainer_class(algorithm: str) -> type[Trainer]:
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise UnknownAlgorithm(algorithm, list(ALGORITHMS)) from None


def trainer_class(algorithm: str) -> type[Trainer]:
    """The trainer of ``algorithm`` (UnknownAlgorithm otherwise), for what is known before any data."""
    return _trainer_class(algorithm)


def validate_params(algorithm: str, params: Mapping[str, object]) -> dict[str, Any]:
    """Check the algorithm name and its params without data; return the complete, typed params."""
    return _trainer_class(algorithm).validate(params)


def trainer_for(algorithm: str, params: Mapping[str, object], data: TrainingData) -> Trainer:
    """Create the trainer of ``algorithm``; UnknownAlgorithm, InvalidParameter or InvalidDataset on error."""
    return _trainer_class(algorithm)(params, data)
