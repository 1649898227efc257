"""The ECS witness of memory kills against moto's server: a task ECS stopped with OutOfMemoryError is
a memory kill, one stopped for another reason is not, and an ECS that does not answer is no answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect_aws import AwsCredentials

from tenantml.adapters.ecs_fleet import EcsMemoryKills
from tenantml.local.processes import claim_port
from tenantml.local.servers import Server
from tests.support.moto import MOTO_REGION, moto_credentials, running_moto

pytestmark = pytest.mark.integration

OOM = "OutOfMemoryError: Container killed due to memory usage"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_moto(tmp_path_factory.mktemp("moto-oom")) as server:
        yield server


@pytest.fixture
def credentials() -> AwsCredentials:
    return moto_credentials()


@pytest.fixture
def scene(moto: Server, credentials: AwsCredentials) -> tuple[Any, str]:
    """moto's ECS with a cluster of the test's own, one container instance and the flow runs' task definition."""
    ecs = credentials.get_boto3_session().client("ecs", endpoint_url=moto.url)
    ec2 = credentials.get_boto3_session().client("ec2", endpoint_url=moto.url)
    cluster = f"tenantml-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=cluster)
    [instance] = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"]
    document = {"instanceId": instance["InstanceId"], "region": MOTO_REGION}
    ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(document))
    ecs.register_task_definition(
        family="tenantml-training",
        containerDefinitions=[{"name": "prefect", "image": "REGISTRY/tenantml:TAG", "memory": 512}],
    )
    return ecs, cluster


def stopped_task(ecs: Any, cluster: str, reason: str) -> str:
    [task] = ecs.run_task(cluster=cluster, taskDefinition="tenantml-training", count=1)["tasks"]
    ecs.stop_task(cluster=cluster, task=task["taskArn"], reason=reason)
    return str(task["taskArn"])


def test_a_task_ecs_stopped_for_memory_is_a_memory_kill_and_others_are_not(
    moto: Server, credentials: AwsCredentials, scene: tuple[Any, str]
) -> None:
    ecs, cluster = scene
    runs = {"oom": stopped_task(ecs, cluster, OOM), "spot": stopped_task(ecs, cluster, "Your Spot Task was interrupted.")}
    pids = {run: f"{cluster}::{arn}" for run, arn in runs.items()}
    pids["process"] = "worker-host:4242"  # a run of the process pool: nothing to ask ECS
    pids["elsewhere"] = f"another-cluster::{runs['oom']}"
    witness = EcsMemoryKills(credentials, cluster, moto.url, infrastructure_pid=pids.get)

    reason = witness.memory_kill("oom")
    assert reason == f"killed for memory by ECS (task {runs['oom']}: {OOM})"
    assert witness.memory_kill("spot") is None
    assert witness.memory_kill("process") is None
    assert witness.memory_kill("elsewhere") is None
    assert witness.memory_kill("never-started") is None


def test_an_ecs_that_does_not_answer_is_no_answer(credentials: AwsCredentials) -> None:
    nowhere = f"http://127.0.0.1:{claim_port('nothing', 0)}"
    witness = EcsMemoryKills(credentials, "tenantml", nowhere,
                             infrastructure_pid=lambda run: "tenantml::arn:aws:ecs:us-east-1:1:task/tenantml/abc")
    assert witness.memory_kill("run") is None
