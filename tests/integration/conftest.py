"""A whole embedded platform (Prefect, MLflow, process workers) shared by the integration tests.

The platform's stores are on SQLite; the modules in :data:`ON_POSTGRES` (the chaos tests: kills,
hangs, repeated failures, supervisor failover) run a second time against a platform whose stores are all on PostgreSQL, each in a temporary
database of its own (ids ``[sqlite]`` and ``[postgres]``). The two platforms run one after the
other: pytest groups the tests by the session-scoped parameter, so the SQLite one is stopped before
the PostgreSQL one starts. Without a PostgreSQL to reach, the ``[postgres]`` tests are skipped, with
the reason in the summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tenantml.local.embedded import EmbeddedPlatform
from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, classification_frame, start_platform
from tests.support.postgres import postgres_stores

__all__ = ["RunningPlatform", "classification_frame"]

ON_POSTGRES = frozenset({"test_failover"})
"""Modules whose tests also run against a platform with every store on PostgreSQL (each adds its own time
to `make test` again; test_production_path covers one training end to end there)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "started" not in metafunc.fixturenames:
        return
    variants = [pytest.param("sqlite", id="sqlite")]
    if metafunc.module.__name__.rpartition(".")[2] in ON_POSTGRES:
        variants.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    metafunc.parametrize("stores", variants, indirect=True, scope="session")


@pytest.fixture(scope="session")
def stores(request: pytest.FixtureRequest) -> str:
    """Where the shared platform keeps its stores: ``sqlite`` (in its home) or ``postgres``."""
    return str(request.param)


@pytest.fixture(scope="session")
def started(stores: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPlatform, RunningPlatform]]:
    home: Path = tmp_path_factory.mktemp(f"home-{stores}")
    with ExitStack() as stack:
        sections: dict[str, dict[str, str]] = {"database": {}, "prefect": {}, "mlflow": {}}
        if stores == "postgres":  # MLflow's auth tables beside its own: the default when only the backend is set
            sections = stack.enter_context(postgres_stores("tenantml_it", separate_auth=False)).sections()
        settings = load_settings(
            home=home,
            database=sections["database"],
            mlflow=sections["mlflow"],
            training={"heartbeat_timeout_s": 3, "checkpoint_interval_s": 1, "attempt_budget": 2,
                      "small_memory_limit_mb": 700, "supervisor_timeout_s": 12},
            prefect={**sections["prefect"], "small_workers": 2, "large_workers": 1},
            fleet={"provisioner": False},  # a fixed fleet: the failover tests count on a free worker; see test_fleet_*
            limits={"max_checkpoint_bytes": 1_000_000},  # far over an sgd checkpoint (2 kB); see test_user_errors
        )
        embedded, running = start_platform(settings)
        try:
            yield embedded, running
        finally:
            embedded.stop()


@pytest.fixture(scope="session")
def platform(started: tuple[EmbeddedPlatform, RunningPlatform]) -> RunningPlatform:
    return started[1]


@pytest.fixture
def embedded(started: tuple[EmbeddedPlatform, RunningPlatform]) -> Iterator[EmbeddedPlatform]:
    """The platform's own processes; a test that stops its supervisor gets it back afterwards."""
    yield started[0]
    started[0].start_supervisor()


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by parameter
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``[postgres]`` tests last of the whole session, so that their platform, started after the SQLite one
    stopped, never runs beside another test's."""
    def on_postgres(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return callspec is not None and callspec.params.get("stores") == "postgres"

    items[:] = [item for item in items if not on_postgres(item)] + [item for item in items if on_postgres(item)]
