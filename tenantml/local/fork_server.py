"""A fork server for flow runs: start each training flow run in milliseconds, not seconds.

Prefect's process worker starts every flow run as a fresh interpreter that imports Prefect,
scikit-learn, pandas and MLflow again: seconds before the first line of training runs. The fork server
imports all of that once, then forks a child per flow run. The process worker still starts the
flow run's command, but that command is :mod:`tenantml.local.launch`, a launcher that hands
its environment, working folder and standard streams to the fork server, relays signals, and exits
with the child's status. Without a fork server the launcher runs ``prefect.engine`` itself.

The fork server stays single-threaded (a fork copies only the calling thread): one selector loop
accepts launchers, relays their signals and reaps children.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantml.errors import PlatformError
from tenantml.local import cgroups
from tenantml.local.processes import Service, start_service, stop_services

__all__ = ["launch", "pid_file", "serve", "socket_path", "start", "wait_ready"]

START_DEADLINE_S = 120.0

Children = dict[int, tuple[socket.socket, Path | None]]  # pid -> (launcher connection, pid file)
Launchers = dict[socket.socket, int]  # launcher connection -> pid of its child


def socket_path(home: Path) -> Path:
    return home / "run" / "flow-runs.sock"


def start(env: Mapping[str, str], home: Path, log_dir: Path, cwd: Path,
          deadline_s: float = START_DEADLINE_S) -> Service:
    """Start the fork server (``cwd``: the project folder, whose flows it imports) and wait for its socket."""
    service = launch(env, home, log_dir, cwd)
    wait_ready(service, home, deadline_s)
    return service


def launch(env: Mapping[str, str], home: Path, log_dir: Path, cwd: Path) -> Service:
    """Start the fork server's process and return at once (``wait_ready`` waits for its socket)."""
    socket_path(home).unlink(missing_ok=True)  # a stale socket must not look like a ready server
    return start_service("fork-server", [sys.executable, "-m", __name__], env, log_dir, cwd)


def wait_ready(service: Service, home: Path, deadline_s: float = START_DEADLINE_S) -> None:
    """Wait for a launched fork server's socket; one that dies or never gets there is stopped, then an error."""
    try:
        end = time.monotonic() + deadline_s
        while not socket_path(home).exists():
            if not service.alive() or time.monotonic() > end:
                raise PlatformError(f"the flow-run fork server did not start within {deadline_s:.0f} s; "
                                    f"see {service.log_path}")
            time.sleep(0.1)
    except BaseException:
        stop_services([service])
        raise


def _preload() -> None:
    """Import once what every flow run needs, so that each forked child starts with it loaded."""
    import mlflow.sklearn  # noqa: F401
    import prefect.engine  # noqa: F401
    import prefect.flow_engine  # noqa: F401

    import flows.training_master  # noqa: F401
    import flows.training_worker  # noqa: F401
    import tenantml.adapters.registry  # noqa: F401
    import tenantml.adapters.tracking  # noqa: F401


def pid_file(home: Path, flow_run_id: str) -> Path:
    """Where the fork server records the pid of a flow run's process (for operators and tests)."""
    return home / "run" / "flow-runs" / f"{flow_run_id}.pid"


def _child(request: dict[str, Any], fds: list[int], inherited: list[Any]) -> None:
    """In the forked child: become the flow run's process, then exit with its status."""
    for resource in inherited:  # other launchers' connections, the listening socket, the selector
        resource.close()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        cgroups.enter_run_cgroup(request["env"])  # the class's memory limit, before the run allocates anything
    except OSError as err:
        print(f"tenantml: this flow run has no memory cgroup: {err}", file=sys.stderr)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # Prefect read its settings when the fork server imported it
    sys.argv = ["prefect.engine", *request["args"]]
    code = 1
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:  # what a normal interpreter exit does: Prefect drains its log and event workers here
            threading._shutdown()  # type: ignore[attr-defined]
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(home: Path) -> None:
    _preload()
    path = socket_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "flow-runs").mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    children: Children = {}
    by_conn: Launchers = {}
    print(f"flow-run fork server ready on {path} (pid {os.getpid()})", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            for key, _ in selector.select(timeout=0.05):
                try:
                    if key.fileobj is server:
                        _accept(server, selector, children, by_conn, home)
                    else:
                        _relay(key.fileobj, selector, by_conn)  # type: ignore[arg-type]
                except Exception:  # one bad launcher must not take the fork server down
                    traceback.print_exc()
            _reap(children, by_conn, selector)
    finally:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        path.unlink(missing_ok=True)


def _accept(server: socket.socket, selector: selectors.BaseSelector, children: Children, by_conn: Launchers,
            home: Path) -> None:
    conn, _ = server.accept()
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if not message or len(fds) != 3:  # the launcher went away before it asked
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        _child(request, fds, [server, conn, *by_conn, selector])
    for fd in fds:
        os.close(fd)
    record = None
    if flow_run_id := request["env"].get("PREFECT__FLOW_RUN_ID"):
        record = pid_file(home, flow_run_id)
        # Written beside and renamed, so a reader never sees the file empty.
        partial = record.with_suffix(".partial")
        partial.write_text(str(pid))
        partial.replace(record)
    children[pid] = (conn, record)
    by_conn[conn] = pid
    selector.register(conn, selectors.EVENT_READ)


def _relay(conn: socket.socket, selector: selectors.BaseSelector, by_conn: Launchers) -> None:
    """A launcher relays signals, one number a line; when it goes away, its child goes too."""
    pid = by_conn[conn]
    data = conn.recv(256)
    numbers = [int(n) for n in data.split()] if data else [signal.SIGKILL]
    for number in numbers:
        try:
            os.kill(pid, number)
        except (ProcessLookupError, OSError):
            pass
    if not data:
        selector.unregister(conn)
        del by_conn[conn]


def _reap(children: Children, by_conn: Launchers, selector: selectors.BaseSelector) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn, record = children.pop(pid)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        try:
            conn.sendall(f"{code}\n".encode())
        except OSError:
            pass
        if conn in by_conn:
            selector.unregister(conn)
            del by_conn[conn]
        conn.close()
        if record is not None:
            record.unlink(missing_ok=True)


if __name__ == "__main__":
    serve(Path(os.environ["TENANTML_HOME"]).resolve())
