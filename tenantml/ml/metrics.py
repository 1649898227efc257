"""How a model is measured: on the rows it learns from (``train_``) and on the held-out rows (``validation_``).

Classifiers get ``accuracy`` and ``loss``: the log loss where the model gives probabilities, the
hinge loss of its decision function otherwise (an SGD classifier with ``loss=hinge`` has no
probabilities); :func:`loss_name` says which. Regressors get ``r2``, ``rmse`` and ``loss``, the mean
squared error. Measuring only predicts: it never changes the model, so it cannot change a resumed
training either.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import hinge_loss, log_loss, mean_squared_error, r2_score

__all__ = ["EVALUATION_ROWS", "LEGACY_NAMES", "evaluation_rows", "loss_name", "score"]

EVALUATION_ROWS = 5000
"""Rows measured on each side while training: enough for a steady curve, few enough to be cheap."""

LEGACY_NAMES = {"accuracy": "train_accuracy", "r2": "train_r2", "mse": "train_loss"}
"""Names a version's metrics had before the split (training rows): kept, so older readers go on working."""


def evaluation_rows(rows: np.ndarray, limit: int = EVALUATION_ROWS) -> np.ndarray:
    """A fixed, evenly spread subset of at most ``limit`` of ``rows``."""
    count = min(len(rows), limit)
    if count == 0:
        return rows[:0]
    return rows[(np.arange(count, dtype=np.int64) * len(rows)) // count]


def loss_name(task: str, estimator: Any) -> str:
    """The loss :func:`score` reports for this model: ``log_loss``, ``hinge`` or ``mse``."""
    if task == "regression":
        return "mse"
    return "log_loss" if hasattr(estimator, "predict_proba") else "hinge"


def score(
    estimator: Any, task: str, classes: np.ndarray | None, features: np.ndarray, truth: np.ndarray, prefix: str
) -> dict[str, float]:
    """The metrics of ``estimator`` on these rows, each named ``<prefix>_<metric>``; none without rows."""
    if len(truth) == 0:
        return {}
    predicted = estimator.predict(features)
    if task == "regression":
        mse = float(mean_squared_error(truth, predicted))
        r2 = float(r2_score(truth, predicted)) if len(truth) > 1 else math.nan  # undefined on one row
        values = {"r2": r2, "rmse": math.sqrt(mse), "loss": mse}
    else:
        assert classes is not None
        values = {"accuracy": float(np.mean(predicted == truth)), "loss": _classification_loss(estimator, classes,
                                                                                              features, truth)}
    return {f"{prefix}_{name}": value for name, value in values.items()}


def _classification_loss(estimator: Any, classes: np.ndarray, features: np.ndarray, truth: np.ndarray) -> float:
    if not hasattr(estimator, "predict_proba"):
        return float(hinge_loss(truth, estimator.decision_function(features), labels=classes))
    known = estimator.classes_  # a Pipeline's are its model's
    probabilities = estimator.predict_proba(features)
    if len(known) != len(classes):  # a tree model fitted on training rows that lack a class: it gives it 0
        full = np.zeros((len(truth), len(classes)))
        full[:, np.searchsorted(classes, known)] = probabilities
        probabilities = full
    return float(log_loss(truth, probabilities, labels=classes))
