"""Worker hosts as network namespaces: a bridge in the root namespace (the server host), one veth pair a host.

Each :func:`network` has names and a /24 of its own (random, checked against the routes in use), so
that parallel runs do not clash, and deletes everything it made on the way out, even after a failure.
A host's processes are started with ``ip netns exec``; they share the file system and the pid space
with the server host (only the network is theirs), so tests find and kill them by pid.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Host", "Network", "network", "unavailable"]

NETNS_DIR = Path("/run/netns")


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why worker hosts cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"tmlprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as err:
        return f"`ip netns add` does not work here: {err}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One worker host: its namespace, its address, and the root side of its veth pair (its cable)."""

    namespace: str
    address: str
    cable: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's network."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.namespace, check=False).split()]

    def owns(self, pid: int) -> bool:
        """Whether the process runs in this host's network (its netns is this host's)."""
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(NETNS_DIR / self.namespace).st_ino
        except OSError:
            return False

    def kill_all(self) -> list[int]:
        """SIGKILL every process of the host; returns their pids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def cut(self) -> None:
        """Unplug the host: its link goes down, every packet to or from it is lost."""
        _ip("link", "set", self.cable, "down")

    def heal(self) -> None:
        _ip("link", "set", self.cable, "up")


@dataclass(frozen=True)
class Network:
    bridge: str
    gateway: str  # the server host's address on the bridge
    hosts: tuple[Host, ...]


def _free_subnet() -> str:
    """A 10.203.x.0/24 that no route uses yet (the prefix of its addresses)."""
    used = _ip("-4", "route", "show", "table", "all", check=False)
    for _ in range(100):
        prefix = f"10.203.{random.randrange(1, 255)}"
        if f"{prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.203.x.0/24 for the test network")


@contextmanager
def network(count: int) -> Iterator[Network]:
    """A bridge with the server host's address and ``count`` hosts on it; all deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    bridge = f"tmlbr{tag}"
    made_links: list[str] = []
    made_namespaces: list[str] = []
    try:
        prefix = _free_subnet()
        _ip("link", "add", bridge, "type", "bridge")
        made_links.append(bridge)
        _ip("addr", "add", f"{prefix}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        hosts = []
        for number in range(count):
            namespace, cable = f"tml{tag}h{number}", f"tmlv{tag}h{number}"
            _ip("netns", "add", namespace)
            made_namespaces.append(namespace)
            _ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            made_links.append(cable)
            _ip("link", "set", cable, "master", bridge, "up")
            address = f"{prefix}.{number + 2}"
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            hosts.append(Host(namespace, address, cable))
        yield Network(bridge, f"{prefix}.1", tuple(hosts))
    finally:
        for namespace in made_namespaces:
            Host(namespace, "", "").kill_all()
            _ip("netns", "del", namespace, check=False)
        for link in reversed(made_links):
            _ip("link", "del", link, check=False)
