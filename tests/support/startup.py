"""`tenantml up` run to its end, for the tests of start-up refusals: what it said, and what it left running."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from tenantml.local.project import project_dir
from tests.support.platform import TENANTML

__all__ = ["EXIT_DEADLINE_S", "left_behind", "run_up"]

EXIT_DEADLINE_S = 120  # the checks take seconds; on a loaded machine the imports alone may take tens


def run_up(home: Path, **settings: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run `tenantml up` with ``settings`` (TENANTML_* variables) until it exits; return it and the processes
    left in its session or naming its home. One that does not exit by the deadline fails the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_"))}
    env.update(TENANTML_HOME=str(home), **settings)
    up = subprocess.Popen([TENANTML, "up"], env=env, cwd=project_dir(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, err = up.communicate(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        up.kill()
        out, err = up.communicate()
        raise AssertionError(f"`tenantml up` did not exit within {EXIT_DEADLINE_S} s: {out[-2000:]}{err[-2000:]}")
    return subprocess.CompletedProcess(up.args, up.returncode, out, err), left_behind(up.pid, home)


def left_behind(session: int, home: Path) -> list[str]:
    """Processes in session ``session``, or whose command line or TENANTML_HOME names ``home``."""
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            command = " ".join(proc.info["cmdline"] or ())
            ours = (os.getsid(proc.pid) == session or str(home) in command
                    or proc.environ().get("TENANTML_HOME") == str(home))
        except (psutil.Error, OSError):
            continue
        if ours and proc.pid != os.getpid():
            left.append(f"{proc.pid} {command}")
    return left
