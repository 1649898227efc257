"""Resumable trainers: bit-for-bit resumption, parameter checking, target checking."""

from __future__ import annotations

import re

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from tenantml.errors import InvalidDataset, InvalidParameter, UnknownAlgorithm
from tenantml.ml.algorithms import ALGORITHMS, Trainer, trainer_for, validate_params
from tenantml.ml.dataset import TrainingData, prepare

SMALL_PARAMS: dict[str, dict[str, object]] = {
    "sgd_classifier": {"epochs": 3, "batch_size": 64},
    "sgd_regressor": {"epochs": 3, "batch_size": 64},
    "mlp_classifier": {"epochs": 3, "batch_size": 64, "hidden_layer_sizes": "8,4"},
    "hist_gradient_boosting_classifier": {"max_iter": 10, "trees_per_step": 3},
    "random_forest_classifier": {"n_estimators": 10, "trees_per_step": 3, "max_depth": 6},
}


def _frame(features: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])


@pytest.fixture(scope="module")
def classification() -> TrainingData:
    features, labels = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=1
    )
    names = np.array(["red", "green", "blue"])[labels]
    return prepare(_frame(features).assign(colour=names), "colour")


@pytest.fixture(scope="module")
def regression() -> TrainingData:
    features, target = make_regression(n_samples=300, n_features=6, noise=0.5, random_state=2)
    return prepare(_frame(features).assign(price=target), "price")


@pytest.fixture
def data_for(classification: TrainingData, regression: TrainingData):
    def pick(algorithm: str) -> TrainingData:
        return regression if ALGORITHMS[algorithm].task == "regression" else classification

    return pick


def _advance(trainer: Trainer) -> dict[str, float]:
    trainer.advance()
    return trainer.evaluate()


def _run(trainer: Trainer) -> list[dict[str, float]]:
    metrics = []
    while trainer.completed_steps < trainer.total_steps:
        metrics.append(_advance(trainer))
    return metrics


def _model_arrays(estimator: object) -> list[np.ndarray]:
    """Every learned array of the model: coefficients, or the structure of every tree."""
    model = estimator[-1] if hasattr(estimator, "steps") else estimator
    if hasattr(model, "coefs_"):
        return [*model.coefs_, *model.intercepts_]
    if hasattr(model, "coef_"):
        return [model.coef_, model.intercept_]
    if hasattr(model, "estimators_"):
        trees = [tree.tree_ for tree in model.estimators_]
        return [getattr(t, a) for t in trees for a in ("feature", "threshold", "children_left", "value")]
    return [p.nodes for predictors in model._predictors for p in predictors]


def _assert_same_model(expected: Trainer, actual: Trainer, data: TrainingData) -> None:
    assert actual.completed_steps == expected.completed_steps == expected.total_steps
    one, two = expected.estimator, actual.estimator
    np.testing.assert_array_equal(one.predict(data.features), two.predict(data.features), strict=True)
    if hasattr(one, "predict_proba") and expected.task == "classification":
        np.testing.assert_array_equal(one.predict_proba(data.features), two.predict_proba(data.features))
    expected_arrays, actual_arrays = _model_arrays(one), _model_arrays(two)
    assert len(expected_arrays) == len(actual_arrays) > 0
    for left, right in zip(expected_arrays, actual_arrays, strict=True):
        np.testing.assert_array_equal(left, right, strict=True)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_resume_after_one_interruption_matches_uninterrupted_run(algorithm: str, data_for) -> None:
    data, params = data_for(algorithm), SMALL_PARAMS[algorithm]
    reference = trainer_for(algorithm, params, data)
    reference_metrics = _run(reference)
    total = reference.total_steps
    for stop in sorted({0, 1, total // 2, total - 1}):
        first = trainer_for(algorithm, params, data)
        metrics = [_advance(first) for _ in range(stop)]
        resumed = trainer_for(algorithm, params, data)
        resumed.restore(first.state())
        assert resumed.completed_steps == stop
        metrics += _run(resumed)
        assert metrics == reference_metrics
        _assert_same_model(reference, resumed, data)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_resume_through_several_restores_matches_uninterrupted_run(algorithm: str, data_for) -> None:
    data, params = data_for(algorithm), SMALL_PARAMS[algorithm]
    reference = trainer_for(algorithm, params, data)
    _run(reference)
    trainer = trainer_for(algorithm, params, data)
    while trainer.completed_steps < trainer.total_steps:
        trainer.advance()
        blob = trainer.state()
        trainer = trainer_for(algorithm, params, data)  # a new worker after every step
        trainer.restore(blob)
    _assert_same_model(reference, trainer, data)


def test_every_algorithm_is_registered_under_its_name() -> None:
    assert sorted(ALGORITHMS) == sorted(SMALL_PARAMS)
    assert all(name == trainer.algorithm for name, trainer in ALGORITHMS.items())


def test_step_schedules_follow_epochs_batches_and_trees(classification: TrainingData) -> None:
    sgd = trainer_for("sgd_classifier", {"epochs": 2, "batch_size": 100}, classification)
    assert sgd.total_steps == 2 * 3
    forest = trainer_for("random_forest_classifier", {"n_estimators": 10, "trees_per_step": 4}, classification)
    assert forest.total_steps == 3
    _run(forest)
    assert len(forest.estimator.estimators_) == 10
    boosting = trainer_for("hist_gradient_boosting_classifier", {"max_iter": 7, "trees_per_step": 5}, classification)
    _run(boosting)
    assert boosting.estimator.n_iter_ == 7


def test_evaluate_measures_both_sides_with_accuracy_or_r2_rmse_and_the_loss(
    classification: TrainingData, regression: TrainingData
) -> None:
    classifier = trainer_for("sgd_classifier", SMALL_PARAMS["sgd_classifier"], classification)
    assert set(_advance(classifier)) == {f"{side}_{m}" for side in ("train", "validation") for m in ("accuracy", "loss")}
    regressor = trainer_for("sgd_regressor", SMALL_PARAMS["sgd_regressor"], regression)
    assert set(_advance(regressor)) == {f"{side}_{m}" for side in ("train", "validation") for m in ("r2", "rmse", "loss")}
    _run(regressor)
    final = regressor.final_metrics()
    assert final["validation_r2"] > 0.9 and final["r2"] == final["train_r2"] and final["mse"] == final["train_loss"]


def test_other_seed_gives_another_model(classification: TrainingData) -> None:
    models = []
    for seed in (0, 0, 1):
        trainer = trainer_for("sgd_classifier", {**SMALL_PARAMS["sgd_classifier"], "seed": seed}, classification)
        _run(trainer)
        models.append(trainer.estimator[-1].coef_)
    assert np.array_equal(models[0], models[1])
    assert not np.array_equal(models[0], models[2])


def test_advance_after_last_step_is_refused(classification: TrainingData) -> None:
    trainer = trainer_for("random_forest_classifier", {"n_estimators": 2, "trees_per_step": 2}, classification)
    trainer.advance()
    with pytest.raises(RuntimeError, match="already done"):
        trainer.advance()


def test_estimator_before_first_step_is_refused(classification: TrainingData) -> None:
    with pytest.raises(RuntimeError, match="advance"):
        trainer_for("sgd_classifier", {}, classification).estimator


def test_restore_refuses_state_of_another_algorithm(classification: TrainingData) -> None:
    forest = trainer_for("random_forest_classifier", {"n_estimators": 3}, classification)
    forest.advance()
    boosting = trainer_for("hist_gradient_boosting_classifier", {}, classification)
    with pytest.raises(ValueError, match="'random_forest_classifier', not 'hist_gradient_boosting_classifier'"):
        boosting.restore(forest.state())
    assert boosting.completed_steps == 0


def test_restore_refuses_state_made_with_other_params_or_data(
    classification: TrainingData, regression: TrainingData
) -> None:
    trainer = trainer_for("sgd_classifier", {"epochs": 2}, classification)
    trainer.advance()
    with pytest.raises(ValueError, match="params"):
        trainer_for("sgd_classifier", {"epochs": 3}, classification).restore(trainer.state())
    other_rows = prepare(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": ["a", "b"] * 3}), "y")
    with pytest.raises(ValueError, match="other data"):
        trainer_for("sgd_classifier", {"epochs": 2}, other_rows).restore(trainer.state())


@pytest.mark.parametrize("blob", [b"not a pickle", pickle.dumps({"format": 99})])
def test_restore_refuses_what_is_not_a_checkpoint(classification: TrainingData, blob: bytes) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        trainer_for("sgd_classifier", {}, classification).restore(blob)


def test_string_params_from_a_command_line_are_coerced() -> None:
    params = validate_params(
        "mlp_classifier",
        {"hidden_layer_sizes": "64,32", "alpha": "0.001", "epochs": "3", "activation": "tanh"},
    )
    assert params["hidden_layer_sizes"] == (64, 32)
    assert params["alpha"] == 0.001 and params["epochs"] == 3 and params["activation"] == "tanh"
    assert validate_params("mlp_classifier", {"hidden_layer_sizes": "32"})["hidden_layer_sizes"] == (32,)
    assert validate_params("mlp_classifier", {"hidden_layer_sizes": [16, 8]})["hidden_layer_sizes"] == (16, 8)
    assert validate_params("sgd_regressor", {"fit_intercept": "false"})["fit_intercept"] is False
    assert validate_params("random_forest_classifier", {"max_depth": "none"})["max_depth"] is None
    assert validate_params("random_forest_classifier", {"max_depth": "4"})["max_depth"] == 4
    assert validate_params("sgd_classifier", {"epochs": 2.0})["epochs"] == 2


def test_missing_params_get_their_defaults() -> None:
    params = validate_params("sgd_classifier", {})
    assert params["loss"] == "log_loss" and params["epochs"] == 5
    assert params["batch_size"] == 256 and params["seed"] == 0
    forest = validate_params("random_forest_classifier", {})
    assert forest["n_estimators"] == 100 and forest["trees_per_step"] == 10


def test_unknown_param_is_refused_naming_it_and_the_allowed_ones() -> None:
    with pytest.raises(InvalidParameter, match=r"'learning_rat'.*allowed parameters: .*learning_rate"):
        validate_params("sgd_classifier", {"learning_rat": 0.1})


@pytest.mark.parametrize(
    ("algorithm", "key", "value"),
    [
        ("sgd_classifier", "epochs", "three"),
        ("sgd_classifier", "epochs", 0),
        ("sgd_classifier", "epochs", True),
        ("sgd_classifier", "epochs", 2.5),
        ("sgd_classifier", "alpha", "-1"),
        ("sgd_classifier", "alpha", "nan"),
        ("sgd_classifier", "loss", "squared_loss"),
        ("sgd_classifier", "fit_intercept", "maybe"),
        ("sgd_regressor", "seed", -1),
        ("mlp_classifier", "hidden_layer_sizes", "64,zero"),
        ("mlp_classifier", "hidden_layer_sizes", "64,0"),
        ("random_forest_classifier", "n_estimators", "none"),
        # upper bounds: each of these ran for days, overflowed or allocated tens of GiB before
        ("sgd_classifier", "epochs", 10**9),
        ("sgd_classifier", "epochs", 10**30),
        ("sgd_classifier", "eta0", 1e308),
        ("sgd_regressor", "batch_size", 10**9),
        ("mlp_classifier", "hidden_layer_sizes", "100000,100000"),
        ("mlp_classifier", "hidden_layer_sizes", ",".join(["8"] * 9)),
        ("hist_gradient_boosting_classifier", "max_iter", 10**6),
        ("random_forest_classifier", "n_estimators", 10**6),
        ("random_forest_classifier", "trees_per_step", 10**6),
    ],
)
def test_bad_param_value_is_refused_naming_key_and_value(algorithm: str, key: str, value: object) -> None:
    with pytest.raises(InvalidParameter, match=f"{algorithm}: parameter '{key}' must be") as caught:
        validate_params(algorithm, {key: value})
    assert repr(value) in str(caught.value)


def test_choice_param_error_lists_the_allowed_values() -> None:
    with pytest.raises(InvalidParameter, match="'log_loss'.*'hinge'"):
        validate_params("sgd_classifier", {"loss": "logistic"})


def test_unknown_algorithm_is_refused_naming_it(classification: TrainingData) -> None:
    with pytest.raises(UnknownAlgorithm, match="'xgboost'.*sgd_classifier"):
        validate_params("xgboost", {})
    with pytest.raises(UnknownAlgorithm, match="'xgboost'"):
        trainer_for("xgboost", {}, classification)


def test_trainer_refuses_bad_params(classification: TrainingData) -> None:
    with pytest.raises(InvalidParameter, match="'batch_size'"):
        trainer_for("sgd_classifier", {"batch_size": "-5"}, classification)


def test_regressor_refuses_a_label_target(classification: TrainingData) -> None:
    with pytest.raises(InvalidDataset, match="target 'colour' holds text labels") as refused:
        trainer_for("sgd_regressor", {}, classification)
    assert not any(re.search(rf"\b{label}\b", str(refused.value)) for label in set(classification.target))


def test_classifier_refuses_a_continuous_target(regression: TrainingData) -> None:
    with pytest.raises(InvalidDataset, match=r"target 'price' is continuous \(\d+ of \d+ values") as refused:
        trainer_for("random_forest_classifier", {}, regression)
    message = str(refused.value)  # it reaches logs and Prefect state messages: no row values in it
    assert not re.search(r"\d\.\d", message), message


def test_classifier_refuses_a_single_class() -> None:
    data = prepare(pd.DataFrame({"x": [1.0, 2.0], "y": [7, 7]}), "y")
    with pytest.raises(InvalidDataset, match="single class in all 2 rows") as refused:
        trainer_for("sgd_classifier", {}, data)
    assert "7" not in str(refused.value)


def test_classifier_accepts_integer_classes() -> None:
    features, labels = make_classification(n_samples=60, n_features=4, random_state=3)
    data = prepare(_frame(features).assign(y=labels), "y")
    trainer = trainer_for("hist_gradient_boosting_classifier", {"max_iter": 2, "trees_per_step": 1}, data)
    _run(trainer)
    assert set(trainer.estimator.predict(data.features)) <= {0, 1}


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (FloatingPointError("overflow encountered in multiply"), InvalidParameter),
        (ValueError("Floating-point under-/overflow occurred at epoch #1. Scaling input data might help."),
         InvalidParameter),
        (ValueError("Unknown label type: continuous; values such as 0.1257"), InvalidDataset),
    ],
)
def test_a_library_failure_inside_a_step_is_a_user_error_without_row_values(
    classification: TrainingData, failure: Exception, kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = trainer_for("sgd_classifier", {}, classification)

    def fail(step: int) -> None:
        raise failure

    monkeypatch.setattr(trainer, "_step", fail)
    with pytest.raises(kind, match="sgd_classifier") as refused:
        trainer.advance()
    assert "0.1257" not in str(refused.value)


def test_a_checkpoint_from_before_the_validation_split_resumes_a_training_on_every_row(
    classification: TrainingData,
) -> None:
    """Such a checkpoint's params have no validation_fraction; migration 0008 gives its request 0."""
    before = trainer_for("sgd_classifier", {"epochs": 2, "validation_fraction": 0}, classification)
    before.advance()
    saved = pickle.loads(before.state())
    del saved["params"]["validation_fraction"]
    resumed = trainer_for("sgd_classifier", {"epochs": 2, "validation_fraction": 0}, classification)
    resumed.restore(pickle.dumps(saved))
    assert resumed.completed_steps == before.completed_steps
    with pytest.raises(ValueError, match="differ"):  # a training that does hold out rows is another training
        trainer_for("sgd_classifier", {"epochs": 2}, classification).restore(pickle.dumps(saved))
