"""Child processes of the embedded platform: start in their own session, wait for health, stop by pid."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from tenantml.errors import PlatformError, PortInUse

__all__ = ["Service", "claim_port", "start_service", "stop_leftovers", "stop_services", "wait_healthy"]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def claim_port(what: str, port: int) -> int:
    """A free port on 127.0.0.1: ``port`` if given (PortInUse when taken), else any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PortInUse(what, port) from err
            raise
        return int(sock.getsockname()[1])


def start_service(name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path) -> Service:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    process = subprocess.Popen(
        list(command), env=dict(env), cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log_file.close()
    return Service(name, process, log_path)


def wait_healthy(service: Service, url: str, deadline_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the process dies."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not service.alive():
            tail = service.log_path.read_text(errors="replace")[-2000:]
            raise PlatformError(f"{service.name} exited with code {service.process.returncode}; log {service.log_path}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise PlatformError(f"{service.name} was not healthy at {url} within {deadline_s:.0f} s; see {service.log_path}")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_services(services: Sequence[Service], grace_s: float = 10.0) -> None:
    """SIGTERM each service and everything it started, wait, then SIGKILL what is left.

    Each service leads its own process group, so children it lost track of (re-parented after it
    died) are signalled too.
    """
    processes: list[psutil.Process] = []
    for service in services:
        _signal_group(service.pid, signal.SIGTERM)
        tree = _tree(service.pid)
        processes.extend(tree)
        for proc in tree:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for service in services:
        _signal_group(service.pid, signal.SIGKILL)
        try:
            service.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            os.kill(service.pid, signal.SIGKILL)


def stop_leftovers(pids: Mapping[str, int], log_dir: Path, words: Sequence[str]) -> list[str]:
    """Stop what a platform that died left running: those of ``pids`` whose command line has one of ``words``.

    The words guard against a pid the system has since given to an unrelated process. Returns the
    names of the processes stopped.
    """
    leftovers = []
    for name, pid in pids.items():
        try:
            process = psutil.Process(int(pid))
            if any(word in " ".join(process.cmdline()) for word in words):
                leftovers.append(Service(name, _Adopted(process), log_dir / f"{name}.log"))  # type: ignore[arg-type]
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            continue
    stop_services(leftovers)
    return [service.name for service in leftovers]


class _Adopted:
    """A process this platform did not start, looked at through the little of Popen that stopping needs."""

    def __init__(self, process: psutil.Process) -> None:
        self.pid, self._process = process.pid, process
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return None if self._process.is_running() else 0

    def wait(self, timeout: float | None = None) -> int:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._process.wait(timeout)
        return 0
