"""The command of a flow run on the local process pools: hand it to the fork server, or run it here.

Kept free of heavy imports: it must start in milliseconds. See :mod:`tenantml.local.fork_server`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def _fallback() -> None:
    from tenantml.local.cgroups import enter_run_cgroup  # here only: the fork server's path has no use for it

    try:
        enter_run_cgroup(os.environ)  # the class's memory limit, kept across the exec
    except OSError as err:
        print(f"tenantml: this flow run has no memory cgroup: {err}", file=sys.stderr)
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def main() -> None:
    home = os.environ.get("TENANTML_HOME")
    path = os.path.join(os.path.abspath(home), "run", "flow-runs.sock") if home else ""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        _fallback()
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "args": sys.argv[1:]}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: conn.sendall(f"{number}\n".encode()))
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:  # the fork server died; `tenantml up` stops its children by process group
            os._exit(1)
        reply += chunk
    code = int(reply)
    if code < 0:  # the child was killed: die the same way, so the worker reports what happened
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot (and need not) be reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    main()
