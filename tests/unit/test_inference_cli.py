"""`tenantml predict` reading a file of rows, and the model commands' parser (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tenantml.cli import build_parser
from tenantml.cli_models import read_rows
from tenantml.errors import InvalidRequest


def test_rows_of_a_csv_become_plain_json_values(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    pd.DataFrame({"age": [31, 45], "income": [1.5, None], "member": [True, False], "label": ["a", "b"]}).to_csv(
        path, index=False
    )
    rows = read_rows(path, drop=["label"])
    assert rows == [{"age": 31, "income": 1.5, "member": True}, {"age": 45, "income": None, "member": False}]
    assert json.loads(json.dumps(rows)) == rows  # strict JSON: no NaN, no numpy scalars


def test_dropping_a_column_that_is_not_there_names_it(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    pd.DataFrame({"age": [1]}).to_csv(path, index=False)
    with pytest.raises(InvalidRequest, match="--drop 'label'"):
        read_rows(path, drop=["label"])


@pytest.mark.parametrize(
    "argv",
    [
        ["model", "promote", "--tenant", "acme", "--model", "churn", "--version", "3"],
        ["model", "rollback", "--tenant", "acme", "--model", "churn", "--json"],
        ["model", "list", "--tenant", "acme", "--json"],
        ["predict", "--model", "churn", "--file", "rows.csv", "--api-key", "k", "--drop", "label"],
    ],
)
def test_the_model_and_predict_commands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_predict_refuses_to_run_without_a_tenant_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tenantml.cli import main

    monkeypatch.delenv("TENANTML_API_KEY", raising=False)
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path))
    assert main(["predict", "--model", "churn", "--file", str(tmp_path / "rows.csv")]) == 2
    assert "--api-key or set TENANTML_API_KEY" in capsys.readouterr().err
