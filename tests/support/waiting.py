"""Waiting by polling with a deadline, and finding a flow run's process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tenantml.local import launch
from tenantml.local.fork_server import pid_file

T = TypeVar("T")

__all__ = ["flow_run_pid", "wait_for"]


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def flow_run_pid(flow_run_id: str) -> int | None:
    """The pid of the process executing a flow run.

    The process worker starts the flow run's command with PREFECT__FLOW_RUN_ID set. That command
    is either ``prefect.engine`` itself, or the launcher, whose flow run runs in a process forked
    by the fork server, which records its pid under ``$TENANTML_HOME/run/flow-runs/``.
    """
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle not in environ:
            continue
        if b"prefect.engine" in cmdline:
            return int(entry.name)
        if launch.__name__.encode() in cmdline:
            homes = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"TENANTML_HOME=")]
            record = pid_file(Path(homes[0]), flow_run_id) if homes else None
            try:
                if record is not None:
                    return int(record.read_text())
            except (OSError, ValueError):
                continue  # not recorded yet: the caller polls again
    return None
