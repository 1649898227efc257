"""The embedded platform's home is the operator's alone: 0700, and what its processes write is 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.local.embedded import check_home


@pytest.fixture
def restored_umask() -> Iterator[None]:
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def test_the_home_is_created_for_its_user_alone(tmp_path: Path, restored_umask: None) -> None:
    home = check_home(tmp_path / "home")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    (home / "tenantml.db").write_text("metadata")  # as the platform's processes write, under its umask
    assert stat.S_IMODE((home / "tenantml.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "datasets").stat().st_mode) == 0o700


def test_an_existing_home_open_to_others_is_closed(tmp_path: Path, restored_umask: None) -> None:
    (tmp_path / "home").mkdir(mode=0o755)
    assert stat.S_IMODE(check_home(tmp_path / "home").stat().st_mode) == 0o700
