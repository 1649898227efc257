"""Resumable, deterministic, incremental training algorithms.

A training is cut into a fixed number of steps; ``Trainer.advance`` runs the next
one, ``Trainer.state`` pickles everything needed to go on and ``Trainer.restore``
takes it back. Restoring after any step and continuing gives the same model, bit
for bit, as an uninterrupted run: every random choice comes from the ``seed``
parameter and the step number, or lives in the pickled estimator. Trainers read
no clock: the caller decides when to checkpoint. Bit-for-bit holds for one
installation (numpy/scikit-learn builds, CPU kind); it does not depend on the
number of threads.

Linear and neural models come in a ``Pipeline`` after a ``StandardScaler``
fitted on all rows, because gradient descent needs scaled features.
"""

from __future__ import annotations

import math
import pickle
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tenantml.errors import InvalidDataset, InvalidParameter, UnknownAlgorithm
from tenantml.ml.dataset import TrainingData
from tenantml.ml.params import MAX_EPOCHS, MAX_LAYER_UNITS, MAX_LAYERS, MAX_TREES, Param, check_params

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

EVALUATION_ROWS = 5000
_CHECKPOINT_FORMAT = 1
_MAX_SEED = 2**32 - 1


def _same_classes(saved: np.ndarray | None, current: np.ndarray | None) -> bool:
    """Both regressors (no classes), or the same class labels in the same order."""
    if saved is None or current is None:
        return saved is None and current is None
    return bool(np.array_equal(saved, current))


def _evaluation_rows(n_rows: int) -> np.ndarray:
    """A fixed, evenly spread subset of at most EVALUATION_ROWS row indices."""
    count = min(n_rows, EVALUATION_ROWS)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    return (np.arange(count, dtype=np.int64) * n_rows) // count


class Trainer(ABC):
    """One training run, advanced step by step and resumable from ``state()``."""

    algorithm: ClassVar[str]
    task: ClassVar[str]
    PARAMS: ClassVar[Mapping[str, Param]]

    def __init__(self, params: Mapping[str, object], data: TrainingData) -> None:
        self.params = self.validate(params)
        self.data = data
        self.classes: np.ndarray | None = self._check_target(data)
        self._completed = 0
        self._evaluation = _evaluation_rows(data.n_rows)
        self._estimator: BaseEstimator = self._build()

    @classmethod
    def validate(cls, params: Mapping[str, object]) -> dict[str, Any]:
        """Return the complete, typed parameters, or raise InvalidParameter."""
        return check_params(cls.algorithm, cls.PARAMS, params)

    @classmethod
    @abstractmethod
    def steps_for(cls, params: Mapping[str, Any], n_rows: int) -> int:
        """Steps of a training with these (validated) params on ``n_rows`` rows: known before any data is read."""

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

    def advance(self) -> dict[str, float]:
        """Run the next step and return metrics on a fixed subset of the training rows."""
        if self._completed >= self.total_steps:
            raise RuntimeError(f"{self.algorithm}: all {self.total_steps} steps are already done")
        try:
            self._step(self._completed)
        except (ArithmeticError, ValueError) as err:  # the same data and params fail the same way again
            raise _numeric_failure(self.algorithm, self._completed, err) from None
        self._completed += 1
        return self._metrics(self._evaluation)

    def final_metrics(self) -> dict[str, float]:
        """Metrics of the current estimator on all training rows."""
        return self._metrics(np.arange(self.data.n_rows))

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
        if saved["params"] != self.params:
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

    def _metrics(self, rows: np.ndarray) -> dict[str, float]:
        features, truth = self.data.features[rows], self.data.target[rows]
        predicted = self.estimator.predict(features)
        if self.task == "classification":
            return {"accuracy": float(np.mean(predicted == truth))}
        return {"r2": float(r2_score(truth, predicted)), "mse": float(mean_squared_error(truth, predicted))}


class _MiniBatchTrainer(Trainer):
    """Epochs of mini-batches fed to ``partial_fit``; row order per epoch from ``(seed, epoch)``."""

    def __init__(self, params: Mapping[str, object], data: TrainingData) -> None:
        super().__init__(params, data)
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data.n_rows / self.params["batch_size"])

    @classmethod
    def steps_for(cls, params: Mapping[str, Any], n_rows: int) -> int:
        return int(params["epochs"]) * math.ceil(n_rows / params["batch_size"])

    @abstractmethod
    def _model(self) -> BaseEstimator:
        """The unfitted estimator that learns with ``partial_fit``."""

    def _build(self) -> BaseEstimator:
        scaler = StandardScaler().fit(self.data.features)
        return Pipeline([("scale", scaler), ("model", self._model())])

    def _rows(self, step: int) -> np.ndarray:
        epoch, batch = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            seed = (self.params["seed"], epoch)
            self._order = np.random.default_rng(seed).permutation(self.data.n_rows)
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
    "seed": _SEED,
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
        "seed": _SEED,
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
        return math.ceil(params[cls.size_param] / params["trees_per_step"])

    def _step(self, step: int) -> None:
        size = min((step + 1) * self.params["trees_per_step"], self.params[self.size_param])
        self._estimator.set_params(**{self.size_param: size})
        self._estimator.fit(self.data.features, self.data.target)


class HistGradientBoostingTrainer(_GrowingEnsembleTrainer):
    """Gradient boosted trees (``HistGradientBoostingClassifier``, warm start, no early stopping)."""

    algorithm = "hist_gradient_boosting_classifier"
    task = "classification"
    size_param = "max_iter"
    PARAMS = {
        "learning_rate": Param(float, 0.1, minimum=0, maximum=100, exclusive=True),
        "max_depth": _MAX_DEPTH,
        "max_iter": Param(int, 100, minimum=1, maximum=MAX_TREES),
        "seed": _SEED,
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
        "seed": _SEED,
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
