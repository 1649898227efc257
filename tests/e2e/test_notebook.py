"""The tenant walkthrough notebook, executed with nbclient against `tenantml up` in a temporary home.

The platform is the session's (tests/e2e/conftest.py): a subprocess the fixture waits healthy,
and on teardown stops with SIGINT (Ctrl-C) by pid, checking that no process it started is left.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tenantml.local.project import project_dir
from tests.support.platform import Up

pytestmark = pytest.mark.e2e

NOTEBOOK = project_dir() / "notebooks" / "tenant_walkthrough.ipynb"


def test_the_walkthrough_runs_end_to_end_against_tenantml_up(
    platform_up: Up, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    status = platform_up.status
    for name in [k for k in os.environ if k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTML_HOME", str(platform_up.home))
    monkeypatch.setenv("WALKTHROUGH_DIR", str(work))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "the notebook is committed with outputs: clear them"
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()

    outputs = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert status["inference_url"] in outputs
    assert "completed" in outputs
    assert "'model_version': '1'" in outputs
    assert "401" in outputs and "404" in outputs and "422" in outputs
