"""`tenantml predict` reading a file of rows, and the model commands' parsing (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer

from tenantml.cli import app
from tenantml.cli.models import read_rows
from tenantml.errors import InvalidRequest


def parsed(argv: list[str]) -> typer.Context:
    """The context of the command ``argv`` names, its parameters parsed; nothing runs."""
    command, name, args, context = typer.main.get_command(app), "tenantml", list(argv), None
    while hasattr(command, "get_command"):  # a group: the next word names its command
        context = command.make_context(name, [], parent=context, resilient_parsing=True)
        name, *args = args
        command = command.get_command(context, name)
        assert command is not None, f"no command {name!r}"
    return command.make_context(name, args, parent=context)


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
    context = parsed(argv)
    assert callable(context.command.callback)
    assert not context.args  # every word was an option or argument of the command


def test_predict_refuses_to_run_without_a_tenant_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tenantml.cli import main

    monkeypatch.delenv("TENANTML_API_KEY", raising=False)
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path))
    assert main(["predict", "--model", "churn", "--file", str(tmp_path / "rows.csv")]) == 2
    assert "--api-key or set TENANTML_API_KEY" in capsys.readouterr().err
