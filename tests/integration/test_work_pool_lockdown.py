"""A flow run created through the Prefect API cannot make a worker run a command of its choosing.

Prefect's default process template lets every flow run set ``command``, ``env`` and
``working_dir``: anyone who reaches the API could run a shell command as the worker's user. The
pools' template fixes them; each job variable a run could try is refused by the API itself.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.platform import RunningPlatform

pytestmark = pytest.mark.integration


def probes(proof: Path) -> dict[str, object]:
    return {
        "command": f"sh -c 'id > {proof}'",
        "env": {"LD_PRELOAD": "/tmp/evil.so", "TENANTML_DATABASE__URL": "sqlite:////tmp/theirs.db"},
        "working_dir": "/tmp",
        "labels": {"owner": "attacker"},
        "stream_output": False,
    }


@pytest.mark.parametrize("variable", sorted(probes(Path("/x"))))
def test_a_run_that_sets_a_job_variable_is_refused_by_the_api(
    platform: RunningPlatform, tmp_path: Path, variable: str
) -> None:
    proof = tmp_path / "proof.txt"
    parameters = {"request_id": str(uuid.uuid4()), "worker_uuid": str(uuid.uuid4()), "epoch": 1}
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), pytest.raises(httpx.HTTPStatusError) as refused:
        run_deployment("training-worker/small", parameters=parameters, timeout=0,
                       job_variables={variable: probes(proof)[variable]})
    assert "Additional properties are not allowed" in str(refused.value), refused.value
    assert not proof.exists()


# -- the ECS pool's template (infra/work-pools/ecs.json), on the same Prefect API ------------------
ECS_TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "work-pools" / "ecs.json"


def ecs_probes() -> dict[str, object]:
    """Every variable of prefect-aws's default ECS template, with a value an attacker would pick."""
    return {
        "command": "sh -c 'id'",
        "env": {"LD_PRELOAD": "/tmp/evil.so"},
        "image": "attacker/image:latest",
        "task_definition_arn": "arn:aws:ecs:eu-west-1:1:task-definition/theirs:1",
        "family": "theirs",
        "match_latest_revision_in_family": True,
        "task_role_arn": "arn:aws:iam::1:role/admin",
        "execution_role_arn": "arn:aws:iam::1:role/admin",
        "aws_credentials": {"aws_access_key_id": "AKIA"},
        "cluster": "theirs",
        "container_name": "sidecar",
        "launch_type": "EC2",
        "capacity_provider_strategy": [{"capacityProvider": "theirs"}],
        "network_configuration": {"assignPublicIp": "ENABLED"},
        "vpc_id": "vpc-theirs",
        "prefect_api_key_secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:theirs",
        "prefect_api_auth_string_secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:theirs",
        "configure_cloudwatch_logs": True,
        "cloudwatch_logs_options": {"awslogs-group": "theirs"},
        "cloudwatch_logs_prefix": "theirs",
        "auto_deregister_task_definition": True,
        "labels": {"owner": "attacker"},
        "cpu": 10**6,
        "memory": 10**9,
    }


def deployment_on(platform: RunningPlatform, pool_type: str, template: Path, job_variables: dict[str, object]) -> str:
    """A pool of ``pool_type`` from a committed template, and a deployment on it (no worker needed)."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    pool, flow = f"{pool_type}-lockdown-{uuid.uuid4().hex[:8]}", f"{pool_type}-lockdown-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type, base_job_template=json.loads(template.read_text())))
        flow_id = client.create_flow_from_name(flow)
        client.create_deployment(flow_id, "default", work_pool_name=pool, job_variables=job_variables)
    return f"{flow}/default"


@pytest.fixture(scope="module")
def ecs_deployment(platform: RunningPlatform) -> str:
    return deployment_on(platform, "ecs", ECS_TEMPLATE, {"cpu": 4096, "memory": 8192})


def test_the_ecs_template_offers_only_name_and_bounded_size() -> None:
    import json

    variables = json.loads(ECS_TEMPLATE.read_text())["variables"]
    assert variables["additionalProperties"] is False
    assert sorted(variables["properties"]) == ["cpu", "memory", "name"]
    configuration = json.loads(ECS_TEMPLATE.read_text())["job_configuration"]
    assert configuration["command"] is None and configuration["env"] == {}
    rendered = json.dumps(configuration)
    for fixed in ("image", "task_role_arn", "execution_role_arn", "cluster", "env", "command", "family"):
        assert "{{ " + fixed + " }}" not in rendered, fixed


@pytest.mark.parametrize("variable", sorted(ecs_probes()))
def test_an_ecs_run_that_sets_a_job_variable_is_refused_by_the_api(
    platform: RunningPlatform, ecs_deployment: str, variable: str
) -> None:
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), pytest.raises(httpx.HTTPStatusError) as refused:
        run_deployment(ecs_deployment, timeout=0, job_variables={variable: ecs_probes()[variable]})
    assert refused.value.response.status_code == 422, refused.value


def test_an_ecs_run_may_choose_its_size_within_the_bounds(platform: RunningPlatform, ecs_deployment: str) -> None:
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}):
        run = run_deployment(ecs_deployment, timeout=0, job_variables={"cpu": 2048, "memory": 4096})
    assert run.job_variables == {"cpu": 2048, "memory": 4096}  # type: ignore[union-attr]


# -- the Kubernetes pool's template (infra/work-pools/k8s.json) -----------------------------------
K8S_TEMPLATE = ECS_TEMPLATE.with_name("k8s.json")


def k8s_probes() -> dict[str, object]:
    """Every variable of prefect-kubernetes' default template but ours, with a value an attacker would pick,
    and sizes out of bounds."""
    from prefect_kubernetes.worker import KubernetesWorker

    picks: dict[str, object] = {
        "command": "sh -c id", "env": {"LD_PRELOAD": "/tmp/evil.so"}, "image": "attacker/image:latest",
        "namespace": "kube-system", "service_account_name": "cluster-admin", "labels": {"owner": "attacker"},
        "annotations": {"owner": "attacker"}, "image_pull_policy": "Always", "backoff_limit": 100,
        "finished_job_ttl": 1, "job_watch_timeout_seconds": 1, "pod_watch_timeout_seconds": 1,
        "stream_output": True, "cluster_config": {"context_name": "theirs"},
        "cpu_request": "64", "cpu_limit": "64", "memory_request": "1Ti", "memory_limit": "1Ti",
    }
    variables = set(KubernetesWorker.get_default_base_job_template()["variables"]["properties"]) - {"name"}
    assert variables <= set(picks), variables - set(picks)
    return {**picks, "cpu": "1000", "memory": "9999Gi"}


@pytest.fixture(scope="module")
def k8s_deployment(platform: RunningPlatform) -> str:
    return deployment_on(platform, "kubernetes", K8S_TEMPLATE, {"cpu": "4", "memory": "16Gi"})


@pytest.mark.parametrize("variable", sorted(k8s_probes()))
def test_a_kubernetes_run_that_sets_a_job_variable_is_refused_by_the_api(
    platform: RunningPlatform, k8s_deployment: str, variable: str
) -> None:
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), pytest.raises(httpx.HTTPStatusError) as refused:
        run_deployment(k8s_deployment, timeout=0, job_variables={variable: k8s_probes()[variable]})
    assert refused.value.response.status_code == 422, refused.value


def test_a_kubernetes_run_may_choose_its_size(platform: RunningPlatform, k8s_deployment: str) -> None:
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}):
        run = run_deployment(k8s_deployment, timeout=0, job_variables={"cpu": "500m", "memory": "3Gi"})
    assert run.job_variables == {"cpu": "500m", "memory": "3Gi"}  # type: ignore[union-attr]
