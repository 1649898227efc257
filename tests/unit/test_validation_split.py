"""The validation split and the metrics on both sides: deterministic, checked early, named for people."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from tenantml.errors import InvalidDataset, InvalidParameter
from tenantml.ml.algorithms import ALGORITHMS, trainer_for, validate_params
from tenantml.ml.dataset import TrainingData, prepare
from tenantml.ml.limits import TrainingLimits, check_training
from tenantml.ml.metrics import evaluation_rows, loss_name, score
from tenantml.ml.split import check_split, split_rows, validation_count


@pytest.fixture(scope="module")
def data() -> TrainingData:
    features, labels = make_classification(n_samples=500, n_features=5, n_informative=3, random_state=4)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(5)]).assign(label=labels)
    return prepare(frame, "label")


def test_the_split_is_the_same_for_the_same_rows_fraction_and_seed() -> None:
    one, two, other = split_rows(1000, 0.2, 7), split_rows(1000, 0.2, 7), split_rows(1000, 0.2, 8)
    np.testing.assert_array_equal(one.validation, two.validation)
    np.testing.assert_array_equal(one.train, two.train)
    assert not np.array_equal(one.validation, other.validation)
    assert len(one.validation) == 200 and len(one.train) == 800
    assert sorted([*one.train, *one.validation]) == list(range(1000))  # a partition, each side sorted
    assert list(one.validation) == sorted(one.validation)


def test_rows_are_drawn_at_random_not_cut_off_the_end() -> None:
    held_out = split_rows(1000, 0.2, 0).validation
    assert held_out.min() < 200 and held_out.max() >= 800


def test_no_validation_keeps_every_row_for_training() -> None:
    split = split_rows(10, 0.0, 3)
    assert list(split.train) == list(range(10)) and len(split.validation) == 0


@pytest.mark.parametrize(("rows", "fraction", "held_out"), [(10, 0.2, 2), (3, 0.2, 1), (7, 0.5, 4), (5, 0.0, 0)])
def test_validation_count_rounds_half_up(rows: int, fraction: float, held_out: int) -> None:
    assert validation_count(rows, fraction) == held_out


def test_a_dataset_too_small_for_the_split_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidParameter, match=r"2 rows: validation_fraction=0.2 holds out none.*at least 3 rows"):
        check_split(2, 0.2, "dataset 'tiny.csv'")
    with pytest.raises(InvalidParameter, match="leaves none to train on"):
        check_split(1, 0.5)
    assert check_split(2, 0.0) == 2 and check_split(0, 0.2) == 0  # no rows: reading the data says so


def test_submission_refuses_the_split_before_anything_is_queued() -> None:
    params = validate_params("sgd_classifier", {})
    with pytest.raises(InvalidParameter, match="dataset 'tiny.csv' has 2 rows"):
        check_training("sgd_classifier", params, 2, 3, 2, TrainingLimits(), "dataset 'tiny.csv'")


@pytest.mark.parametrize("value", [-0.1, 0.51, 1, "half"])
def test_validation_fraction_outside_zero_to_a_half_is_refused(value: object) -> None:
    with pytest.raises(InvalidParameter, match=r"'validation_fraction' must be a number >= 0 and <= 0.5"):
        validate_params("random_forest_classifier", {"validation_fraction": value})


def test_every_algorithm_has_validation_fraction_defaulting_to_a_fifth() -> None:
    assert all(validate_params(name, {})["validation_fraction"] == 0.2 for name in ALGORITHMS)


def test_steps_count_the_training_rows_only(data: TrainingData) -> None:
    trainer = trainer_for("sgd_classifier", {"epochs": 2, "batch_size": 100}, data)
    assert trainer.total_steps == 2 * 4  # 400 training rows of 500
    assert ALGORITHMS["sgd_classifier"].steps_for(trainer.params, 500) == trainer.total_steps
    whole = trainer_for("sgd_classifier", {"epochs": 2, "batch_size": 100, "validation_fraction": 0}, data)
    assert whole.total_steps == 2 * 5


def test_the_model_never_learns_from_the_validation_rows(data: TrainingData) -> None:
    trainer = trainer_for("random_forest_classifier", {"n_estimators": 5, "trees_per_step": 5, "bootstrap": False}, data)
    trainer.advance()
    forest = trainer.estimator
    assert sum(tree.tree_.n_node_samples[0] for tree in forest.estimators_) == 5 * len(trainer.split.train)


def test_a_classifier_needs_two_classes_among_its_training_rows() -> None:
    data = prepare(pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": ["a", "a", "b"]}), "y")
    with pytest.raises(InvalidDataset, match="single class in the 1 training rows.*lower validation_fraction"):
        trainer_for("sgd_classifier", {"validation_fraction": 0.5}, data)  # 2 of 3 rows held out


def test_evaluate_gives_validation_metrics_and_the_loss_with_its_name(data: TrainingData) -> None:
    for algorithm, loss in [("sgd_classifier", "log_loss"), ("mlp_classifier", "log_loss"),
                            ("random_forest_classifier", "log_loss")]:
        trainer = trainer_for(algorithm, {}, data)
        trainer.advance()
        metrics = trainer.evaluate()
        assert trainer.loss == loss
        assert 0 <= metrics["validation_accuracy"] <= 1 and metrics["validation_loss"] > 0
        assert metrics["train_loss"] > 0
    hinge = trainer_for("sgd_classifier", {"loss": "hinge"}, data)
    hinge.advance()
    assert hinge.loss == "hinge" and hinge.evaluate()["validation_loss"] >= 0


def test_validation_accuracy_is_measured_on_the_held_out_rows_only(data: TrainingData) -> None:
    trainer = trainer_for("random_forest_classifier", {"n_estimators": 20, "max_depth": None}, data)
    while trainer.completed_steps < trainer.total_steps:
        trainer.advance()
    final = trainer.final_metrics()
    held_out = trainer.split.validation
    expected = np.mean(trainer.estimator.predict(data.features[held_out]) == data.target[held_out])
    assert final["validation_accuracy"] == pytest.approx(expected)
    assert final["train_accuracy"] > final["validation_accuracy"]  # a deep forest fits its own rows best
    assert final["accuracy"] == final["train_accuracy"]  # the name of before the split: training rows


def test_a_class_missing_from_a_tree_models_rows_costs_it_loss_not_an_error() -> None:
    features = np.arange(12, dtype=float).reshape(-1, 1)
    truth = np.array(["a", "b", "c"] * 4, dtype=object)
    from sklearn.tree import DecisionTreeClassifier

    fitted = DecisionTreeClassifier(random_state=0).fit(features[truth != "c"], truth[truth != "c"])
    metrics = score(fitted, "classification", np.array(["a", "b", "c"]), features, truth, "validation")
    assert metrics["validation_accuracy"] == pytest.approx(2 / 3) and math.isfinite(metrics["validation_loss"])


def test_regressor_metrics_are_r2_rmse_and_the_squared_error_loss() -> None:
    from sklearn.linear_model import LinearRegression

    features = np.arange(10, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(features, 2 * features[:, 0])
    metrics = score(model, "regression", None, features, 2 * features[:, 0] + 1, "train")
    assert metrics == pytest.approx({"train_r2": 1 - 10 / 330, "train_rmse": 1.0, "train_loss": 1.0})
    assert loss_name("regression", model) == "mse"


def test_evaluation_rows_are_an_even_subset_of_the_given_rows() -> None:
    rows = np.arange(0, 20_000, 2)
    picked = evaluation_rows(rows, limit=100)
    assert len(picked) == 100 and set(picked) <= set(rows) and picked[0] == 0 and picked[-1] > 19_000
    assert list(evaluation_rows(rows[:5], limit=100)) == list(rows[:5])
