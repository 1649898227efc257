"""The inference service's API docs from a real `bentoml serve`: Swagger UI at /docs, the OpenAPI
document at /docs.json with a title and version, a Bearer scheme, an example that the service
really answers, and the error statuses it really gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantml.local.processes import claim_port, start_service
from tenantml.local.servers import Server, inference_env
from tests.support.inference import (
    FEATURES,
    PROJECT_DIR,
    add_tenant,
    register_model,
    start_inference_server,
    train_model,
)

pytestmark = pytest.mark.integration

ERRORS = {"400", "401", "404", "413", "422", "500", "503", "504"}


@dataclass
class Docs:
    client: httpx.Client
    key: str
    spec: dict[str, Any]


@pytest.fixture(scope="module")
def docs(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    home = tmp_path_factory.mktemp("inference-docs")
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    database_url = f"sqlite:///{home / 'tenantml.db'}"
    key = add_tenant(database_url, tenant)
    estimator, frame = train_model(seed=4)
    register_model(mlflow_server.url, tenant, "churn", estimator, frame)
    server = start_inference_server(home, mlflow_server.url, database_url)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            spec = client.get("/docs.json").raise_for_status().json()
            yield Docs(client, key, spec)
    finally:
        server.stop()


def test_the_document_has_a_title_and_the_package_version(docs: Docs) -> None:
    assert docs.spec["info"]["title"] == "tenantml inference"
    assert docs.spec["info"]["version"] == version("tenantml")
    assert "Authorization: Bearer" in docs.spec["info"]["description"]


def test_predict_requires_the_bearer_scheme(docs: Docs) -> None:
    schemes = docs.spec["components"]["securitySchemes"]
    assert list(schemes.values()) == [{**next(iter(schemes.values())), "type": "http", "scheme": "bearer"}]
    operation = docs.spec["paths"]["/predict"]["post"]
    assert operation["security"] == [{name: []} for name in schemes]


def test_every_error_status_the_service_answers_is_documented_in_its_shape(docs: Docs) -> None:
    responses = docs.spec["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == {"200"} | ERRORS
    error = docs.spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and set(error["properties"]) == {"error", "field"}
    for status in ERRORS:
        media = responses[status]["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Error"} and media["example"]["error"]
    assert responses["422"]["content"]["application/json"]["example"]["field"] == "rows[0].age"


def test_the_documented_example_is_answered_and_the_documented_errors_are_real(docs: Docs) -> None:
    """The example row was built from a feature schema; a model with those features answers it."""
    example = docs.spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert list(example["rows"][0]) == [name for name, _ in FEATURES]
    answered = docs.client.post("/predict", json=example, headers={"Authorization": f"Bearer {docs.key}"})
    assert answered.status_code == 200, answered.text
    assert set(answered.json()) == {"predictions", "model_version"} and len(answered.json()["predictions"]) == 1

    assert docs.client.post("/predict", json=example).status_code == 401
    wrong = {**example, "rows": [{**example["rows"][0], "age": "old"}]}
    refused = docs.client.post("/predict", json=wrong, headers={"Authorization": f"Bearer {docs.key}"})
    assert (refused.status_code, set(refused.json())) == (422, {"error", "field"})
    unknown = docs.client.post("/predict", json={**example, "model": "nope"}, headers={"Authorization": f"Bearer {docs.key}"})
    assert unknown.status_code == 404


def test_docs_is_swagger_ui_on_this_document_with_its_scripts_served_here(docs: Docs) -> None:
    page = docs.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text and '"url": "/docs.json"' in page.text
    assert "googletagmanager" not in page.text
    for asset in ("/static_content/swagger-ui-bundle.js", "/static_content/swagger-ui.css"):
        assert docs.client.get(asset).status_code == 200, asset
    assert docs.client.get("/").status_code == 200  # BentoML's own page, reading the same /docs.json


def test_the_built_bento_lists_and_serves_with_these_docs(mlflow_server: Any, tmp_path: Path) -> None:
    """The README's commands: `bentoml build` of serving/bentofile.yaml, `bentoml list`, and
    `bentoml serve <tag>` of the built Bento (its own copy of the code), away from the project."""
    env = inference_env({k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "BENTOML_"))}, tmp_path)
    bentoml = str(Path(sys.executable).parent / "bentoml")
    built = subprocess.run([bentoml, "build", "-f", "serving/bentofile.yaml", "-o", "tag", "."], cwd=PROJECT_DIR,
                           env=env, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().rpartition("__tag__:")[2]
    assert tag.startswith("tenantml-inference:"), built.stdout[-500:]
    listed = subprocess.run([bentoml, "list", "-o", "json"], env=env, capture_output=True, text=True, timeout=120,
                            check=True)
    assert tag in {bento["tag"] for bento in json.loads(listed.stdout)}

    env.update(TENANTML_DATABASE__URL=f"sqlite:///{tmp_path / 'tenantml.db'}",
               TENANTML_MLFLOW__TRACKING_URI=mlflow_server.url)
    add_tenant(env["TENANTML_DATABASE__URL"], f"t-{uuid.uuid4().hex[:10]}")  # the schema the service reads
    port = claim_port("inference service", 0)
    command = [bentoml, "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "logs").mkdir()
    server = Server(start_service("bento", command, env, tmp_path / "logs", tmp_path), url, f"{url}/readyz")
    try:
        server.wait_ready()
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/docs.json").json()["info"]["title"] == "tenantml inference"
            assert client.get("/docs").status_code == 200
    finally:
        server.stop()
