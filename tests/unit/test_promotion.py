"""The promotion policy: which version the champion alias points at, decided from metrics alone."""

from __future__ import annotations

import pytest

from tenantml.domain.promotion import should_promote


def test_always_promotes_even_a_worse_model() -> None:
    promote, why = should_promote("always", {"accuracy": 0.1}, {"accuracy": 0.9})
    assert promote and "always" in why


@pytest.mark.parametrize("policy", ["always", "if-better", "if-better:mse"])
def test_first_version_is_promoted_whatever_the_policy(policy: str) -> None:
    promote, why = should_promote(policy, {"accuracy": 0.5, "mse": 1.0}, None)
    assert promote and "promoted" in why


@pytest.mark.parametrize(("candidate", "promote"), [(0.91, True), (0.90, False), (0.89, False)])
def test_if_better_compares_accuracy_by_default(candidate: float, promote: bool) -> None:
    decided, why = should_promote("if-better", {"accuracy": candidate}, {"accuracy": 0.90})
    assert decided is promote
    assert "accuracy" in why and ("promoted" if promote else "kept champion") in why


def test_if_better_falls_back_to_r2_for_regressors() -> None:
    assert should_promote("if-better", {"r2": 0.8, "mse": 3.0}, {"r2": 0.7, "mse": 1.0})[0]
    assert not should_promote("if-better", {"r2": 0.6, "mse": 0.5}, {"r2": 0.7, "mse": 1.0})[0]


@pytest.mark.parametrize("metric", ["mse", "rmse", "mae", "log_loss"])
def test_lower_is_better_for_error_metrics(metric: str) -> None:
    assert should_promote(f"if-better:{metric}", {metric: 0.5}, {metric: 1.0})[0]
    assert not should_promote(f"if-better:{metric}", {metric: 1.5}, {metric: 1.0})[0]


def test_explicit_metric_overrides_the_default() -> None:
    candidate, champion = {"accuracy": 0.95, "f1": 0.40}, {"accuracy": 0.90, "f1": 0.60}
    promote, why = should_promote("if-better:f1", candidate, champion)
    assert not promote and "f1 0.4 vs champion 0.6" in why
    assert should_promote("if-better", candidate, champion)[0]


def test_missing_metric_promotes_and_says_why() -> None:
    promote, why = should_promote("if-better:f1", {"accuracy": 0.5}, {"accuracy": 0.9})
    assert promote and "'f1' missing" in why


def test_if_better_judges_on_the_validation_rows_when_both_versions_have_them() -> None:
    candidate = {"accuracy": 0.99, "validation_accuracy": 0.80}
    champion = {"accuracy": 0.90, "validation_accuracy": 0.85}
    promote, why = should_promote("if-better", candidate, champion)
    assert not promote and "validation_accuracy 0.8 vs champion 0.85" in why
    regressor = should_promote("if-better", {"r2": 0.5, "validation_r2": 0.9}, {"r2": 0.9, "validation_r2": 0.8})
    assert regressor[0] and "validation_r2" in regressor[1]


def test_against_a_champion_of_before_the_split_training_accuracy_is_compared() -> None:
    promote, why = should_promote("if-better", {"accuracy": 0.95, "validation_accuracy": 0.5}, {"accuracy": 0.9})
    assert promote and "accuracy 0.95 vs champion 0.9" in why


@pytest.mark.parametrize("metric", ["validation_loss", "train_loss", "validation_rmse", "validation_log_loss"])
def test_prefixed_losses_and_errors_are_lower_is_better(metric: str) -> None:
    assert should_promote(f"if-better:{metric}", {metric: 0.5}, {metric: 1.0})[0]
    assert not should_promote(f"if-better:{metric}", {metric: 1.5}, {metric: 1.0})[0]
