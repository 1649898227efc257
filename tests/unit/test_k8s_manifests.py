"""The platform's Kubernetes manifests (infra/k8s/), checked against Kubernetes 1.30's API schemas,
strict (an unknown field is an error), and read for what the schemas cannot say: no secret in
them, every pod restricted, Services that select pods, one database migration for all the Prefect
servers, and each worker class sized."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "infra" / "k8s").glob("*.yaml"))
KUBERNETES = "1.30.0"
SECRET_NAMES = ("PASSWORD", "AUTH_STRING", "SECRET", "DATABASE__URL", "CONNECTION_URL", "STORE_URI", "_URL")


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
    k8s_pool = json.loads((ROOT / "infra" / "work-pools" / "k8s.json").read_text())
    yield "k8s.json flow run", k8s_pool["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def env_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [container] = pod["containers"]
    return {entry["name"]: entry for entry in container.get("env", [])}


@pytest.mark.parametrize("path", MANIFESTS, ids=[path.name for path in MANIFESTS])
def test_each_manifest_is_valid_for_kubernetes_1_30_strictly(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_no_secret_is_in_the_manifests_only_references_to_them() -> None:
    assert not of_kind("Secret")
    for name, pod in pod_specs():
        for variable, entry in env_of(pod).items():
            plain = "value" in entry and variable not in ("TENANTML_MLFLOW__TRACKING_URI", "MLFLOW_TRACKING_URI")
            assert not (plain and any(part in variable for part in SECRET_NAMES)), f"{name}: {variable} inlined"
    for config in of_kind("ConfigMap").values():
        for key, value in config["data"].items():
            assert "@" not in value and "password" not in key.lower(), f"{key} looks like a credential"
    readme = (ROOT / "infra" / "README.md").read_text()
    referenced = {entry["valueFrom"]["secretKeyRef"]["name"] for _, pod in pod_specs()
                  for entry in env_of(pod).values() if "valueFrom" in entry}
    assert referenced and all(f"`{secret}`" in readme for secret in referenced), "the README says how to create each"


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    assert of_kind("Namespace")["tenantml"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, pod in pod_specs():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert security.get("runAsUser", 1) != 0, name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        wants_api = pod["serviceAccountName"] == "tenantml-k8s-worker"
        assert pod["automountServiceAccountToken"] is wants_api, f"{name}: only the Kubernetes worker calls the API"


def test_each_service_selects_a_deployments_pods_on_a_named_port() -> None:
    deployments = of_kind("Deployment")
    for name, service in of_kind("Service").items():
        selector = service["spec"]["selector"]
        targets = [d for d in deployments.values() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} deployments"
        [container] = targets[0]["spec"]["template"]["spec"]["containers"]
        ports = {port["name"] for port in container.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports, name


def test_the_prefect_servers_share_one_database_and_only_the_job_migrates_it() -> None:
    settings = of_kind("ConfigMap")["prefect-server"]["data"]
    assert settings["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    for setting in ("PREFECT_MESSAGING_BROKER", "PREFECT_MESSAGING_CACHE", "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING",
                    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"):
        importlib.import_module(settings[setting])  # the image installs prefect-redis (the cloud extra)
    servers = {name: pod for name, pod in pod_specs() if name in ("prefect-api", "prefect-services", "prefect-migrate")}
    assert len(servers) == 3
    for name, pod in servers.items():
        [container] = pod["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "prefect-server"}}], name
        env = env_of(pod)
        for variable in ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DOCKET_URL", "PREFECT_REDIS_MESSAGING_URL"):
            assert "secretKeyRef" in env[variable]["valueFrom"], f"{name}: {variable}"
    assert servers["prefect-migrate"]["containers"][0]["args"] == ["prefect", "server", "database", "upgrade", "-y"]
    assert "--no-services" in servers["prefect-api"]["containers"][0]["args"]
    assert of_kind("Deployment")["prefect-api"]["spec"]["replicas"] >= 2


def test_each_worker_class_is_a_deployment_sized_by_its_class() -> None:
    deployments = of_kind("Deployment")
    sizes = {}
    for worker_class in ("small", "large"):
        pod = deployments[f"worker-{worker_class}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["args"] == ["worker"]  # the image's entrypoint: workers and their fork server
        assert env_of(pod)["TENANTML_WORKER_CLASS"]["value"] == worker_class
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]  # the limit is the size
        sizes[worker_class] = resources["limits"]["memory"]
    assert int(sizes["large"].removesuffix("Gi")) > int(sizes["small"].removesuffix("Gi"))
