"""`tenantml algorithms`: every algorithm `train` accepts, with its parameters and their defaults."""

from __future__ import annotations

import json

import pytest

from tenantml.cli import main
from tenantml.ml.algorithms import ALGORITHMS


def test_every_algorithm_is_listed_with_each_parameter_default_and_allowed_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["algorithms", "--json"]) == 0
    listed = {entry["algorithm"]: entry["parameters"] for entry in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(ALGORITHMS)
    for name, trainer in ALGORITHMS.items():
        assert [p["name"] for p in listed[name]] == list(trainer.PARAMS)
    epochs = next(p for p in listed["sgd_classifier"] if p["name"] == "epochs")
    assert epochs["default"] == ALGORITHMS["sgd_classifier"].PARAMS["epochs"].default
    assert "an integer >=" in epochs["allowed"]


def test_the_table_names_each_algorithm_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert all(out.count(name) >= 1 for name in ALGORITHMS)
    assert "hidden_layer_sizes" in out
