"""Memory cgroups for local flow runs, so the kernel's OOM killer is a resource failure too (claim 7).

With ``TENANTML_PREFECT__SMALL_MEMORY_MB`` (or ``LARGE_``) set, each flow run of that class runs
in a memory cgroup of its own, limited to that many MiB: what an ECS task's or a pod's memory
limit is in the cloud. A training that outgrows it is killed by the kernel, with SIGKILL, which
the worker reports like any other kill; but the run's cgroup counts the kill (``oom_kill`` in v1's
``memory.oom_control``, v2's ``memory.events``), and :class:`KernelMemoryKills`, the supervisor's
witness, reads it there, so the attempt is recorded as a resource failure and resumes on the large
class.

The layout, under the memory cgroup ``tenantml up`` runs in (it must be able to create children
there, as root can)::

    <own cgroup>/tenantml-<home>/<class>/<flow run id>/

A worker of a limited class gets the class's folder and limit in its environment, which Prefect's
process worker passes on to each flow run's command; whichever process becomes the flow run (the
fork server's child, or the launcher before it executes ``prefect.engine``) creates its run's
cgroup and moves itself in with :func:`enter_run_cgroup`, so everything the run allocates is
charged there. A run's cgroup is removed once judged: by the witness, or when it is empty and
counted no kill.

Standard library only: the launcher imports it and must start in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tenantml.domain.memory_kills import kernel, oom_kills
from tenantml.errors import InvalidSetting

__all__ = ["MEMORY_MB_VARIABLE", "RUN_CGROUP_VARIABLE", "Hierarchy", "KernelMemoryKills", "class_folder",
           "enter_run_cgroup", "find", "remove_folders", "worker_env"]

RUN_CGROUP_VARIABLE = "TENANTML_RUN_CGROUP"  # the class's folder of run cgroups
MEMORY_MB_VARIABLE = "TENANTML_RUN_MEMORY_MB"  # each run's memory limit in MiB
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """The memory cgroup this process is in: v1 (the ``memory`` controller's own tree) or v2 (unified)."""

    version: int
    path: Path

    @property
    def counts_file(self) -> str:
        return "memory.oom_control" if self.version == 1 else "memory.events"

    def limit(self, cgroup: Path, memory_mb: int) -> None:
        size = str(memory_mb * 1024 * 1024)
        if self.version == 1:
            (cgroup / "memory.limit_in_bytes").write_text(size)
            swap = cgroup / "memory.memsw.limit_in_bytes"  # with swap, the limit would swap, not kill
            if swap.exists():
                swap.write_text(size)
        else:
            (cgroup / "memory.max").write_text(size)
            (cgroup / "memory.swap.max").write_text("0")

    def enable_children(self, cgroup: Path) -> None:
        """v2 only: let ``cgroup``'s children have memory limits of their own."""
        if self.version == 2:
            (cgroup / "cgroup.subtree_control").write_text("+memory")


def find(proc_cgroup: str | None = None, root: Path = CGROUP_ROOT) -> Hierarchy | None:
    """This process's memory cgroup, from ``/proc/self/cgroup``; None without a memory controller."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    unified = None
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            v1 = root / "memory" / path.lstrip("/")
            if (v1 / "memory.oom_control").exists():
                return Hierarchy(1, v1)
        if number == "0" and controllers == "":
            unified = root / path.lstrip("/")
    if unified is not None and "memory" in _read(unified / "cgroup.controllers").split():
        return Hierarchy(2, unified)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _tenantml_folder(hierarchy: Hierarchy, home: Path) -> Path:
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return hierarchy.path / f"tenantml-{digest}"


def class_folder(home: Path, worker_class: str, hierarchy: Hierarchy | None = None) -> tuple[Hierarchy, Path]:
    """Create (if need be) the folder of ``worker_class``'s run cgroups for the platform at ``home``.

    OSError when this process may not create cgroups (not root, a read-only cgroup file system, a
    v2 cgroup whose controllers cannot be delegated), ``LookupError`` when there is no memory controller.
    """
    hierarchy = hierarchy or find()
    if hierarchy is None:
        raise LookupError("this machine has no memory cgroup controller (neither v1 nor v2) for this process")
    folder = _tenantml_folder(hierarchy, home)
    for level in (folder, folder / worker_class):
        level.mkdir(exist_ok=True)
        hierarchy.enable_children(level)
    return hierarchy, folder / worker_class


def worker_env(env: Mapping[str, str], worker_class: str, memory_mb: int | None) -> dict[str, str]:
    """What a worker of ``worker_class`` adds to its environment so that its runs get the class's limit."""
    if not memory_mb:
        return {}
    try:
        _, folder = class_folder(Path(env["TENANTML_HOME"]), worker_class)
    except (OSError, LookupError) as err:
        raise InvalidSetting(
            f"TENANTML_PREFECT__{worker_class.upper()}_MEMORY_MB={memory_mb} needs a memory cgroup per flow run, "
            f"which cannot be created here ({err}): unset it, or start the platform as root on a machine with "
            "the memory cgroup controller"
        ) from err
    return {RUN_CGROUP_VARIABLE: str(folder), MEMORY_MB_VARIABLE: str(memory_mb)}


def enter_run_cgroup(env: Mapping[str, str]) -> Path | None:
    """Become the flow run's process in its own cgroup of its class's folder, if ``env`` asks for one."""
    folder, memory_mb, run_id = env.get(RUN_CGROUP_VARIABLE), env.get(MEMORY_MB_VARIABLE), env.get(
        "PREFECT__FLOW_RUN_ID")
    if not folder or not memory_mb or not run_id:
        return None
    hierarchy = find()
    if hierarchy is None:
        return None
    cgroup = Path(folder) / run_id
    cgroup.mkdir(exist_ok=True)
    hierarchy.limit(cgroup, int(memory_mb))
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    return cgroup


class KernelMemoryKills:
    """The supervisor's witness of kernel OOM kills in the local runs' cgroups (the MemoryKills port)."""

    def __init__(self, home: Path, hierarchy: Hierarchy | None = None) -> None:
        self.hierarchy = hierarchy or find()
        self.folder = _tenantml_folder(self.hierarchy, home) if self.hierarchy else None

    def memory_kill(self, flow_run_id: str) -> str | None:
        if self.hierarchy is None or self.folder is None:
            return None
        found = None
        for cgroup in self.folder.glob(f"*/{flow_run_id}"):
            found = found or kernel(str(cgroup), 0, oom_kills(_read(cgroup / self.hierarchy.counts_file)))
            _remove_if_empty(cgroup)
        self.sweep()
        return found

    def sweep(self) -> None:
        """Remove the run cgroups that are empty and counted no kill: those runs have nothing to tell."""
        if self.hierarchy is None or self.folder is None:
            return
        for cgroup in self.folder.glob("*/*-*"):
            if cgroup.is_dir() and not oom_kills(_read(cgroup / self.hierarchy.counts_file)):
                _remove_if_empty(cgroup)


def remove_folders(home: Path, hierarchy: Hierarchy | None = None) -> None:
    """Remove the platform's run cgroups and its classes' folders, once its workers have stopped.

    Each is removed only if no process is in it (a run still dying keeps its own, and its class's).
    """
    hierarchy = hierarchy or find()
    if hierarchy is None:
        return
    folder = _tenantml_folder(hierarchy, home)
    for level in [*folder.glob("*/*-*"), *folder.glob("*"), folder]:
        if level.is_dir():
            _remove_if_empty(level)


def _remove_if_empty(cgroup: Path) -> None:
    if not _read(cgroup / "cgroup.procs").strip():
        try:
            cgroup.rmdir()
        except OSError:  # a process moved in meanwhile, or the kernel is still tearing it down
            pass
