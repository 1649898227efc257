"""The work pools' base job templates (infra/work-pools/), checked the ways Prefect checks them,
without a server: the API's own checks of a template and of a deployment's job variables, then
each worker type's job configuration built from the template and each class's variables, as the
worker builds it for a flow run. Locked down: a run may set its name and size, nothing that runs code.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.schema_tools import ValidationError, is_valid_schema, validate
from prefect.workers.base import BaseWorker
from prefect.workers.process import ProcessWorker
from prefect_aws.workers.ecs_worker import ECSWorker
from prefect_kubernetes.worker import KubernetesWorker

POOLS = Path(__file__).resolve().parents[2] / "infra" / "work-pools"
CLASSES: dict[str, Any] = json.loads((POOLS / "classes.json").read_text())
WORKERS: dict[str, tuple[str, type[BaseWorker[Any, Any, Any]], set[str]]] = {
    "process": ("process.json", ProcessWorker, {"name"}),
    "ecs": ("ecs.json", ECSWorker, {"name", "cpu", "memory"}),
    "kubernetes": ("k8s.json", KubernetesWorker, {"name", "cpu", "memory"}),
}
CASES = [(pool, worker_class) for pool in WORKERS for worker_class in ("small", "large")]


def template(pool: str) -> dict[str, Any]:
    return json.loads((POOLS / WORKERS[pool][0]).read_text())


def check_job_variables(base: dict[str, Any], values: dict[str, Any]) -> None:
    """What the API does with a deployment's job variables (prefect.server.api.validation)."""
    schema = base["variables"]
    is_valid_schema(schema, preprocess=False)
    defaults = {name: spec["default"] for name, spec in schema["properties"].items() if "default" in spec}
    validate({**defaults, **values}, schema, raise_on_error=True, preprocess=True, ignore_required=True,
             allow_none_with_default=True)


def job_configuration(pool: str, values: dict[str, Any]) -> Any:
    """The worker's job configuration for one flow run, as ``BaseWorker`` builds it.

    The client is one that reaches no server: the templates reference no block and no variable,
    so resolving them asks nothing (one that did would fail here, refused).
    """
    _, worker, _ = WORKERS[pool]
    nowhere = PrefectClient("http://127.0.0.1:9/api")
    build = worker.job_configuration.from_template_and_values(template(pool), values, client=nowhere)
    configuration = asyncio.run(build)
    configuration.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="quiet-otter"))
    return configuration


@pytest.mark.parametrize("pool", sorted(WORKERS))
def test_each_template_passes_the_apis_checks_and_offers_only_name_and_size(pool: str) -> None:
    base = template(pool)
    _, worker, allowed = WORKERS[pool]
    WorkPoolCreate(name="tenantml-training", type=worker.type, base_job_template=base)  # placeholders declared
    assert set(base["variables"]["properties"]) == allowed
    assert base["variables"]["additionalProperties"] is False
    check_job_variables(base, {})  # the defaults themselves
    # every variable of the worker type's own default template, bar ours, is refused
    for variable in set(worker.get_default_base_job_template()["variables"]["properties"]) - allowed:
        with pytest.raises(ValidationError, match="Additional properties are not allowed"):
            check_job_variables(base, {variable: "x"})


@pytest.mark.parametrize(("pool", "worker_class"), CASES)
def test_each_class_builds_a_valid_job_configuration_of_its_workers_type(pool: str, worker_class: str) -> None:
    values = CLASSES[pool][worker_class]
    check_job_variables(template(pool), values)
    configuration = job_configuration(pool, values)
    assert configuration.command and "prefect" in configuration.command  # the worker's own flow-run command


@pytest.mark.parametrize("worker_class", ["small", "large"])
def test_a_kubernetes_flow_run_gets_its_class_size_and_nothing_of_its_choosing(worker_class: str) -> None:
    size = CLASSES["kubernetes"][worker_class]
    manifest = job_configuration("kubernetes", size).job_manifest
    pod = manifest["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"] == {"requests": size, "limits": size}  # the limit is what OOMKills
    assert container["image"] == "REGISTRY/tenantml:TAG"
    assert (manifest["metadata"]["namespace"], pod["serviceAccountName"]) == ("tenantml", "tenantml-flow-run")
    names = {entry["name"]: entry for entry in container["env"]}
    assert names["TENANTML_DATABASE__URL"]["valueFrom"]["secretKeyRef"]["name"] == "tenantml-metadata-db"
    assert "PREFECT__FLOW_RUN_ID" in names  # the worker's own variables come first, ours are kept
    assert not [entry for entry in container["env"] if "password" in entry["name"].lower() and "value" in entry]
    # The Job the worker creates is valid for Kubernetes 1.30, strictly, but for two fields prefect-kubernetes
    # requires in the pod spec (its _get_base_job_manifest), which the API server drops with a warning.
    quirks = {key: pod.pop(key) for key in ("parallelism", "completions")}
    assert quirks == {"parallelism": 1, "completions": 1}
    kubernetes_validate.validate(manifest, "1.30.0", strict=True)


def test_the_kubernetes_size_is_bounded_and_well_formed() -> None:
    base = template("kubernetes")
    for bad in ({"cpu": "1000"}, {"cpu": "one"}, {"memory": "2G"}, {"memory": "9999Gi"}, {"memory": 2048}):
        with pytest.raises(ValidationError):
            check_job_variables(base, bad)


def test_an_ecs_flow_run_gets_its_class_size_and_the_fixed_image() -> None:
    for worker_class, size in CLASSES["ecs"].items():
        configuration = job_configuration("ecs", size)
        definition = configuration.task_definition
        assert (int(definition["cpu"]), int(definition["memory"])) == (size["cpu"], size["memory"]), worker_class
        assert definition["containerDefinitions"][0]["image"].endswith("/tenantml:TAG")
