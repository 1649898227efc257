"""`tenantml up` with a database setting it cannot use stops before it starts anything: it exits 1,
its message names every wrong setting (never a password), and no process or state file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantml.local.state import state_file
from tests.support.startup import run_up

pytestmark = pytest.mark.e2e

REFUSED = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/tenantml"  # nothing listens on port 1


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        pytest.param({"TENANTML_DATABASE__URL": REFUSED}, ["TENANTML_DATABASE__URL: cannot connect",
                                                           "connection refused; check host and port"], id="refused"),
        pytest.param({"TENANTML_PREFECT__DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1/prefect"},
                     ["TENANTML_PREFECT__DATABASE_URL: driver 'postgresql+psycopg2'", "postgresql+asyncpg"],
                     id="wrong-driver"),
        pytest.param({"TENANTML_MLFLOW__BACKEND_STORE_URI": "not a url", "TENANTML_DATABASE__URL": REFUSED},
                     ["TENANTML_MLFLOW__BACKEND_STORE_URI: 'not a url' is not a database URL",
                      "TENANTML_DATABASE__URL: cannot connect"], id="every-problem-at-once"),
    ],
)
def test_up_with_a_database_it_cannot_use_exits_naming_the_setting_and_leaves_nothing(
    tmp_path: Path, settings: dict[str, str], named: list[str]
) -> None:
    home = tmp_path / "home"
    done, left = run_up(home, **settings)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: cannot start, nothing was started: "), done.stderr
    for text in named:
        assert text in done.stderr, (text, done.stderr)
    assert "s3cret" not in done.stderr + done.stdout
    assert not left, f"processes left by a `tenantml up` that never started: {left}"
    assert not state_file(home).exists()
    assert not (home / "logs").exists() or not list((home / "logs").iterdir()), "a service was started (it logged)"


@pytest.mark.postgres
def test_up_with_a_database_that_does_not_exist_says_how_to_create_it(tmp_path: Path) -> None:
    from tests.support.postgres import SERVER_URL

    done, left = run_up(tmp_path / "home", TENANTML_MLFLOW__BACKEND_STORE_URI=f"postgresql://{SERVER_URL}/tenantml_nope")
    assert done.returncode == 1
    assert ("TENANTML_MLFLOW__BACKEND_STORE_URI: cannot connect to postgresql://postgres@127.0.0.1:5432/tenantml_nope: "
            "database 'tenantml_nope' does not exist; create it (`createdb tenantml_nope`)") in done.stderr, done.stderr
    assert not left
