"""Local memory cgroups: which hierarchy this process is in, and a real kernel OOM kill in a run's
cgroup, seen by the supervisor's witness (no Prefect: a plain process plays the flow run)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.errors import InvalidSetting
from tenantml.local import cgroups

V1 = "12:pids:/user.slice\n4:memory:/process_api/0bd5\n1:name=systemd:/\n0::/\n"
V2 = "0::/user.slice/user-0.slice/session-1.scope\n"


def test_the_memory_cgroup_is_found_in_v1_and_in_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "memory" / "process_api" / "0bd5"
    v1.mkdir(parents=True)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert cgroups.find(V1, tmp_path) == cgroups.Hierarchy(1, v1)
    assert cgroups.find(V1, tmp_path).counts_file == "memory.oom_control"

    v2 = tmp_path / "user.slice" / "user-0.slice" / "session-1.scope"
    v2.mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cgroups.find(V2, tmp_path) == cgroups.Hierarchy(2, v2)
    assert cgroups.find(V2, tmp_path).counts_file == "memory.events"
    (v2 / "cgroup.controllers").write_text("cpu pids\n")
    assert cgroups.find(V2, tmp_path) is None  # no memory controller delegated: no limits to set


def test_a_worker_of_an_unlimited_class_changes_nothing_and_an_impossible_limit_is_refused(tmp_path: Path) -> None:
    assert cgroups.worker_env({"TENANTML_HOME": str(tmp_path)}, "small", None) == {}
    if cgroups.find() is not None:
        return  # this machine can create them; the refusal is for machines that cannot
    with pytest.raises(InvalidSetting, match="TENANTML_PREFECT__SMALL_MEMORY_MB=300"):
        cgroups.worker_env({"TENANTML_HOME": str(tmp_path)}, "small", 300)


@pytest.fixture
def small_folder(tmp_path: Path) -> Iterator[Path]:
    """The small class's folder of run cgroups for a platform at ``tmp_path``, removed afterwards."""
    try:
        _, folder = cgroups.class_folder(tmp_path, "small")
    except (OSError, LookupError) as err:
        pytest.skip(f"cannot create memory cgroups here: {err}")
    yield folder
    cgroups.remove_folders(tmp_path)
    assert not folder.parent.exists()


ALLOCATE = (
    "import os, sys\n"
    "from tenantml.local.cgroups import enter_run_cgroup\n"
    "enter_run_cgroup(os.environ)\n"
    "block = b'\\x01' * (int(sys.argv[1]) << 20)\n"  # written, so every page is charged
)


def _run(folder: Path, memory_mb: int, allocate_mb: int) -> tuple[str, int]:
    run_id = str(uuid.uuid4())
    env = {cgroups.RUN_CGROUP_VARIABLE: str(folder), cgroups.MEMORY_MB_VARIABLE: str(memory_mb),
           "PREFECT__FLOW_RUN_ID": run_id, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", ALLOCATE, str(allocate_mb)], env=env, timeout=120, check=False)
    return run_id, done.returncode


def test_a_run_over_its_limit_is_killed_by_the_kernel_and_the_witness_says_so(
    tmp_path: Path, small_folder: Path
) -> None:
    witness = cgroups.KernelMemoryKills(tmp_path)
    killed, code = _run(small_folder, memory_mb=150, allocate_mb=400)
    assert code == -9  # SIGKILL: to the worker, a kill like any other
    assert (small_folder / killed).is_dir()  # kept until judged
    reason = witness.memory_kill(killed)
    assert reason is not None and reason.startswith(f"killed for memory by the kernel (cgroup {small_folder / killed}")
    assert "oom_kill 1" in reason
    assert not (small_folder / killed).exists()  # judged: removed

    fine, code = _run(small_folder, memory_mb=150, allocate_mb=20)
    assert code == 0
    assert witness.memory_kill(fine) is None
    assert not [p for p in small_folder.iterdir() if p.is_dir()]  # an empty run without a kill is swept away

    kept, _ = _run(small_folder, memory_mb=150, allocate_mb=400)  # a kill nobody asked about yet
    assert (small_folder / kept).is_dir()
    cgroups.remove_folders(tmp_path)  # as the platform's workers stop
    assert not small_folder.parent.exists()
