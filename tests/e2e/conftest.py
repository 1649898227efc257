"""One `tenantml up` (with the inference service) in a temporary home, shared by every e2e test.

It runs as a subprocess in its own session (see tests.support.platform.tenantml_up): the fixture
waits for `tenantml status --json` to say healthy, yields it, then stops it with SIGINT (Ctrl-C)
by pid and checks that no process it started is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.platform import Up, tenantml_up


@pytest.fixture(scope="session")
def platform_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with tenantml_up(tmp_path_factory.mktemp("e2e-home")) as up:
        yield up
