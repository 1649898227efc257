"""The tenant walkthrough notebook, executed with nbclient against `tenantml up` in a temporary home.

The platform runs as a subprocess; the test waits for `tenantml status --json` to say healthy,
runs every cell, then stops the platform with SIGINT (Ctrl-C) by pid and checks that no process
it started is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
NOTEBOOK = PROJECT_DIR / "notebooks" / "tenant_walkthrough.ipynb"
TENANTML = str(Path(sys.executable).parent / "tenantml")
START_DEADLINE_S = 300
STOP_DEADLINE_S = 90


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_", "BENTOML_"))}
    env.update(TENANTML_HOME=str(home), BENTOML_DO_NOT_TRACK="true",
               TENANTML_PREFECT__SMALL_WORKERS="1", TENANTML_PREFECT__LARGE_WORKERS="0")
    return env


def _wait_healthy(up: subprocess.Popen[bytes], env: dict[str, str], log: Path) -> dict[str, object]:
    started = time.monotonic()
    while time.monotonic() - started < START_DEADLINE_S:
        if up.poll() is not None:
            raise AssertionError(f"`tenantml up` exited with {up.returncode}:\n{log.read_text()[-4000:]}")
        status = subprocess.run([TENANTML, "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
        if status.returncode == 0:
            found = json.loads(status.stdout)
            if found["healthy"] and found.get("inference_url"):
                return dict(found)
        time.sleep(1)
    raise AssertionError(f"the platform was not healthy within {START_DEADLINE_S} s:\n{log.read_text()[-4000:]}")


def _stop(up: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """Ctrl-C by pid, then SIGTERM and SIGKILL if it hangs; returns the processes still alive."""
    try:
        tree = [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for sig, wait_s in ((signal.SIGINT, STOP_DEADLINE_S), (signal.SIGTERM, 15)):
        if up.poll() is not None:
            break
        os.kill(up.pid, sig)
        try:
            up.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    _, alive = psutil.wait_procs(tree, timeout=30)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for proc in alive:  # leave nothing behind, but report it
        proc.kill()
    if up.poll() is None:
        up.kill()
        up.wait(timeout=10)
    return alive


def test_the_walkthrough_runs_end_to_end_against_a_fresh_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = _environment(home)
    log = tmp_path / "up.log"
    with log.open("wb") as output:
        up = subprocess.Popen([TENANTML, "up"], env=env, cwd=PROJECT_DIR, stdout=output, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        status = _wait_healthy(up, env, log)
        for name in [k for k in os.environ if k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_"))]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("TENANTML_HOME", str(home))
        monkeypatch.setenv("WALKTHROUGH_DIR", str(work))
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
            "the notebook is committed with outputs: clear them"
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(work)}}).execute()
    finally:
        left = _stop(up)
    assert not left, f"processes left after stopping `tenantml up`: {[(p.pid, p.name()) for p in left]}"
    assert "tenantml stopped" in log.read_text()

    outputs = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert status["inference_url"] in outputs
    assert "completed" in outputs
    assert "'model_version': '1'" in outputs
    assert "401" in outputs and "404" in outputs and "422" in outputs
