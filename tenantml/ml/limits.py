"""How large one training may be: rows, steps, weights and checkpoint bytes, checked before the work.

Submission checks what it can know from a dataset's header and size (rows counted as lines, two
classes assumed); the worker checks again with the data loaded (the exact rows and classes) and
checks each checkpoint before it uploads it. Every refusal is a user error that names the setting,
so the request fails at once instead of using up its attempts on a worker that cannot hold it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenantml.errors import InvalidDataset, InvalidParameter
from tenantml.ml.algorithms import trainer_class
from tenantml.ml.split import check_split

__all__ = ["TrainingLimits", "check_checkpoint", "check_training"]


@dataclass(frozen=True)
class TrainingLimits:
    """The ``limits`` settings a training is held to (defaults as in tenantml.settings.LimitSettings)."""

    max_rows: int = 10_000_000
    max_total_steps: int = 10_000_000
    max_model_parameters: int = 20_000_000
    max_checkpoint_bytes: int = 1024**3


def check_training(
    algorithm: str, params: Mapping[str, Any], n_rows: int, n_features: int, n_classes: int,
    limits: TrainingLimits, dataset: str = "the dataset",
) -> None:
    """Refuse a training over ``limits``: InvalidDataset for rows, InvalidParameter for steps, weights or a
    validation split the rows cannot hold."""
    if n_rows > limits.max_rows:
        raise InvalidDataset(
            f"{dataset} has {n_rows} rows, over the limit of {limits.max_rows} (TENANTML_LIMITS__MAX_ROWS): "
            "sample or split it"
        )
    check_split(n_rows, params["validation_fraction"], dataset)
    trainer = trainer_class(algorithm)
    steps = trainer.steps_for(params, n_rows)
    if steps > limits.max_total_steps:
        raise InvalidParameter(
            f"{algorithm}: this training would take {steps} steps on {n_rows} rows, over the limit of "
            f"{limits.max_total_steps} (TENANTML_LIMITS__MAX_TOTAL_STEPS): lower epochs, raise batch_size, "
            "or raise trees_per_step"
        )
    weights = trainer.parameter_count(params, n_features, n_classes)
    if weights > limits.max_model_parameters:
        raise InvalidParameter(
            f"{algorithm}: the model would hold {weights} weights ({n_features} features, {max(n_classes, 2)} "
            f"classes), over the limit of {limits.max_model_parameters} (TENANTML_LIMITS__MAX_MODEL_PARAMETERS): "
            "use smaller hidden_layer_sizes or fewer features"
        )


def check_checkpoint(algorithm: str, size: int, step: int, limits: TrainingLimits) -> None:
    if size > limits.max_checkpoint_bytes:
        raise InvalidParameter(
            f"{algorithm}: the checkpoint at step {step} is {size} bytes, over the limit of "
            f"{limits.max_checkpoint_bytes} (TENANTML_LIMITS__MAX_CHECKPOINT_BYTES): use fewer or shallower trees "
            "(n_estimators, max_iter, max_depth) or a smaller network"
        )
