"""The worker image's Dockerfile, read statically (no container engine on this machine): a pinned base,
installs at the tested versions, not root, and an entrypoint that starts what the package has."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from tenantml.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "infra" / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def all_of(keyword: str) -> list[str]:
    return [rest for name, rest in instructions() if name == keyword]


def test_the_base_image_is_pinned_to_the_python_the_project_requires() -> None:
    [base] = all_of("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert match, f"unpinned or unexpected base image {base!r}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={match[1]}.{match[2]}" in requires


def test_it_installs_the_package_with_the_tested_constraints() -> None:
    order = instructions()
    copies = [i for i, (name, rest) in enumerate(order) if name == "COPY" and "constraints.txt" in rest.split()]
    installs = [i for i, (name, rest) in enumerate(order) if name == "RUN" and "pip install" in rest]
    assert copies and installs and copies[0] < installs[0]
    assert all(re.search(r"pip install -c constraints\.txt ", order[i][1]) for i in installs)
    for rest in all_of("COPY"):
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_it_runs_as_a_user_that_is_not_root() -> None:
    users = all_of("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    order = instructions()
    last_user = max(i for i, (name, _) in enumerate(order) if name == "USER")
    assert not any(name == "RUN" for name, _ in order[last_user:]), "RUN after USER runs unprivileged only by luck"
    assert any(f"--uid {user}" in rest for rest in all_of("RUN")), "the USER's uid is created by useradd"


def test_the_entrypoint_is_the_script_and_it_starts_a_command_the_package_has() -> None:
    [entrypoint] = all_of("ENTRYPOINT")
    [script] = json.loads(entrypoint)  # exec form: signals reach the script, which execs the workers
    assert any(rest.split() == ["infra/docker/entrypoint.sh", f"/usr/local/bin/{script}"] for rest in all_of("COPY"))
    assert os.access(ENTRYPOINT, os.X_OK)
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    text = ENTRYPOINT.read_text()
    started = re.search(r"exec tenantml (worker start) --class \S+ --count \S+", text)
    assert started, "the entrypoint no longer starts `tenantml worker start`"
    shown = CliRunner().invoke(app, ["worker", "start", "--help"])
    assert shown.exit_code == 0, shown.output
    assert "--class" in shown.output and "--count" in shown.output
    assert json.loads(all_of("CMD")[0]) == ["worker"]
