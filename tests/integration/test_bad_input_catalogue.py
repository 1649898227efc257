"""The README's bad-input catalogue is the tests: each row's input is sent, and the answer (status or
exit code, error code, the start of the message) must be the row's. A row without a probe, or a
probe without a row, fails too.

Tenant API rows go to a real tenant API (uvicorn on a free port); CLI rows run `tenantml` in tenant
mode against it; `tenantml up` rows run it as a subprocess, each in a home of its own. Tenants are "acme" (the caller) and "globex" (the other one), in the API's own
metadata.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tenantml.cli import main
from tenantml.domain.tenant import hash_api_key, new_api_key
from tests.support.startup import run_up
from tests.support.tenant_api import LiveTenantApi, client_for, live_tenant_api

README = Path(__file__).resolve().parents[2] / "README.md"
CSV = b"x0,x1,label\n0.1,1.0,0\n0.2,0.5,1\n0.3,0.1,0\n"
LIMIT = 200_000
ORDER = {"model": "churn", "dataset": "data.csv", "target": "label", "algorithm": "sgd_classifier"}

Answer = tuple[str, str, str]
"""(status or ``exit N``, code or ``-``, message)."""


@dataclass
class Catalogue:
    api: LiveTenantApi
    key: str
    other_key: str
    full_key: str
    other_request: str
    ended_request: str
    tmp: Path

    def http(self, method: str, path: str, key: str | None = None, **extra: object) -> Answer:
        with client_for(self.api.url, key or self.key) as client:
            answer = client.request(method, path, **extra)  # type: ignore[arg-type]
        body = answer.json()
        return str(answer.status_code), body["code"], body["message"]

    def submit(self, key: str | None = None, **changes: object) -> Answer:
        return self.http("POST", "/v1/trainings", key, json={**ORDER, **changes})


def _tenant(api: LiveTenantApi, name: str) -> str:
    key = new_api_key()
    api.store.add_tenant(name, hash_api_key(key), datetime.now(UTC))
    with client_for(api.url, key) as client:
        assert client.put("/v1/datasets/data.csv", content=CSV).status_code == 201
    return key


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    home = tmp_path_factory.mktemp("catalogue")
    with live_tenant_api(home, {"TENANTML_LIMITS__MAX_DATASET_BYTES": str(LIMIT)}) as api:
        key, other_key, full_key = _tenant(api, "acme"), _tenant(api, "globex"), _tenant(api, "initech")
        api.store.set_queue_limit("initech", 0)
        prefix = api.storage.prefix("acme")
        (prefix / "passwd.csv").symlink_to("/etc/passwd")
        os.mkfifo(prefix / "fifo.csv")
        (api.storage.prefix("globex") / "secret.csv").write_bytes(CSV)
        os.link(api.storage.prefix("globex") / "secret.csv", prefix / "hard.csv")
        with client_for(api.url, key) as client:
            assert client.put("/v1/datasets/busy.csv", content=CSV).status_code == 201
            assert client.post("/v1/trainings", json={**ORDER, "model": "busy", "dataset": "busy.csv"}
                               ).status_code == 202
            ended = client.post("/v1/trainings", json={**ORDER, "model": "ended"}).json()["request_id"]
            assert client.post(f"/v1/trainings/{ended}/cancel").status_code == 200
        with client_for(api.url, other_key) as client:
            other = client.post("/v1/trainings", json=ORDER).json()["request_id"]
        api.register("acme", "solo", 0.7)
        api.registry.set_champion("acme", "solo", "1")
        yield Catalogue(api, key, other_key, full_key, other, ended, home)


def _cli(catalogue: Catalogue, *argv: str, key: str | None = None, url: str | None = None) -> Answer:
    saved = dict(os.environ)
    os.environ.update(TENANTML_HOME=str(catalogue.tmp / "cli-home"), TENANTML_API_KEY=key or catalogue.key,
                      TENANTML_API_URL=url or catalogue.api.url)
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return f"exit {code}", "-", err.getvalue().strip().removeprefix("error: ")


PROBES: dict[str, Callable[[Catalogue], Answer]] = {
    "no-key": lambda c: _plain(c, "GET", "/v1/trainings", {}),
    "unknown-key": lambda c: c.http("GET", "/v1/trainings", key="tml_not-a-key"),
    "not-bearer": lambda c: _plain(c, "GET", "/v1/trainings", {"Authorization": f"Basic {c.key}"}),
    "tenant-field": lambda c: c.submit(tenant="globex"),
    "not-json": lambda c: c.http("POST", "/v1/trainings", content=b"{model", headers={"Content-Type": "application/json"}),
    "missing-field": lambda c: c.http("POST", "/v1/trainings", json={k: v for k, v in ORDER.items() if k != "target"}),
    "wrong-type": lambda c: c.submit(params="epochs=3"),
    "unknown-algorithm": lambda c: c.submit(algorithm="sgd_clasifier"),
    "bad-parameter": lambda c: c.submit(params={"epochs": -1}),
    "unknown-parameter": lambda c: c.submit(params={"epoch": 3}),
    "dotted-model": lambda c: c.submit(model="globex.churn"),
    "bad-promotion": lambda c: c.submit(promotion="sometimes"),
    "long-idempotency-key": lambda c: c.submit(idempotency_key="k" * 200),
    "dataset-dotdot": lambda c: c.submit(dataset="../globex/data.csv"),
    "dataset-absolute": lambda c: c.submit(dataset=str(c.api.storage.prefix("globex") / "data.csv")),
    "dataset-file-uri": lambda c: c.submit(dataset=f"file://{c.api.storage.prefix('globex') / 'data.csv'}"),
    "dataset-remote-uri": lambda c: c.submit(dataset="s3://bucket/globex/data.csv"),
    "dataset-symlink": lambda c: c.submit(dataset="passwd.csv"),
    "dataset-fifo": lambda c: c.submit(dataset="fifo.csv"),
    "dataset-hard-link": lambda c: c.submit(dataset="hard.csv"),
    "dataset-control-character": lambda c: c.submit(dataset="data\n.csv"),
    "dataset-missing": lambda c: c.submit(dataset="nope.csv"),
    "target-missing": lambda c: c.submit(target="churn"),
    "quota-full": lambda c: c.submit(key=c.full_key),
    "request-unknown": lambda c: c.http("GET", "/v1/trainings/nope"),
    "request-of-another-tenant": lambda c: c.http("GET", f"/v1/trainings/{c.other_request}"),
    "cancel-ended": lambda c: c.http("POST", f"/v1/trainings/{c.ended_request}/cancel"),
    "follow-timeout": lambda c: c.http("GET", f"/v1/trainings/{c.ended_request}/events", params={"timeout_s": 0}),
    "upload-name-dotdot": lambda c: c.http("PUT", "/v1/datasets/%2E%2E", content=CSV),
    "upload-name-path": lambda c: c.http("PUT", "/v1/datasets/sub%2Fdata.csv", content=CSV),
    "upload-name-hidden": lambda c: c.http("PUT", "/v1/datasets/.data.csv", content=CSV),
    "upload-name-control-character": lambda c: c.http("PUT", "/v1/datasets/data%00.csv", content=CSV),
    "upload-suffix": lambda c: c.http("PUT", "/v1/datasets/data.exe", content=CSV),
    "upload-empty": lambda c: c.http("PUT", "/v1/datasets/empty.csv", content=b""),
    "upload-too-large": lambda c: c.http("PUT", "/v1/datasets/big.csv", content=b"x" * (LIMIT + 1)),
    "upload-too-large-streamed": lambda c: c.http("PUT", "/v1/datasets/big.csv",
                                                  content=iter([b"x" * 100_000] * 3)),
    "delete-in-use": lambda c: c.http("DELETE", "/v1/datasets/busy.csv"),
    "delete-outside": lambda c: c.http("DELETE", "/v1/datasets/..%2Fglobex%2Fdata.csv"),
    "model-unknown": lambda c: c.http("GET", "/v1/models/nope/versions"),
    "promote-unknown-version": lambda c: c.http("POST", "/v1/models/solo/promote", json={"version": "9"}),
    "promote-not-a-number": lambda c: c.http("POST", "/v1/models/solo/promote", json={"version": "latest"}),
    "rollback-nothing": lambda c: c.http("POST", "/v1/models/solo/rollback"),
    "route-unknown": lambda c: c.http("GET", "/v1/nothing"),
    "cli-operator-command": lambda c: _cli(c, "tenant", "list"),
    "cli-other-tenant": lambda c: _cli(c, "runs", "--tenant", "globex"),
    "cli-unknown-key": lambda c: _cli(c, "runs", key="tml_not-a-key"),
    "cli-unreachable": lambda c: _cli(c, "runs", url="http://127.0.0.1:1"),
    "cli-bad-param": lambda c: _cli(c, "train", "--model", "m", "--dataset", "data.csv", "--target", "label",
                                    "--algorithm", "sgd_classifier", "--param", "epochs"),
    "cli-upload-missing-file": lambda c: _cli(c, "dataset", "add", "/nonexistent/data.csv"),
    "up-database-unreachable": lambda c: _up(c, TENANTML_DATABASE__URL="postgresql+psycopg://postgres:pw@127.0.0.1:1/tml"),
    "up-database-not-a-url": lambda c: _up(c, TENANTML_DATABASE__URL="tenantml.db"),
    "up-prefect-sync-driver": lambda c: _up(c, TENANTML_PREFECT__DATABASE_URL="postgresql://postgres@127.0.0.1/prefect"),
    "up-mlflow-async-driver": lambda c: _up(c, TENANTML_MLFLOW__BACKEND_STORE_URI="postgresql+asyncpg://127.0.0.1/mlflow"),
}


def _up(catalogue: Catalogue, **settings: str) -> Answer:
    """`tenantml up` (the operator's) in a home of its own, with ``settings``: refused before it starts anything."""
    done, left = run_up(catalogue.tmp / f"up-{uuid.uuid4().hex[:8]}", **settings)
    assert not left, left
    return f"exit {done.returncode}", "-", done.stderr.strip().removeprefix("error: ")


def _plain(catalogue: Catalogue, method: str, path: str, headers: dict[str, str]) -> Answer:
    answer = httpx.request(method, f"{catalogue.api.url}{path}", headers=headers)
    return str(answer.status_code), answer.json()["code"], answer.json()["message"]


def rows() -> dict[str, tuple[str, str, str]]:
    """The catalogue's rows: id -> (status, code, start of the message), from the README."""
    section = README.read_text().split("### Bad-input catalogue", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([a-z-]+)` \| [^|]+ \| [^|]+ \| (\d{3}|exit \d) \| `?([a-z_-]+)`? \| (.*) \|", line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3), match.group(4))
    return found


def test_every_probe_has_a_row_and_every_row_a_probe() -> None:
    assert sorted(rows()) == sorted(PROBES)


@pytest.mark.parametrize("row_id", sorted(PROBES))
def test_the_catalogue_row_is_the_answer(catalogue: Catalogue, row_id: str) -> None:
    status, code, message = PROBES[row_id](catalogue)
    expected = rows().get(row_id)
    assert expected is not None, f"no README row for {row_id}: | `{row_id}` | ... | {status} | `{code}` | {message} |"
    shown = message.replace("|", "\\|").replace(str(catalogue.tmp), "<home>")
    assert (status, code) == expected[:2], (row_id, status, code, message)
    assert shown.startswith(expected[2].removesuffix("…").rstrip()), (row_id, shown)
