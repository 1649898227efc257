"""The ECS backend against moto's server: it reads each class's desired count and sets the one asked for.

moto runs as a real process on a free port (as prefect-aws tests its AWS code against moto); each
test makes its own cluster and two worker services with boto3, under random names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect_aws import AwsCredentials

from tenantml.adapters.ecs_fleet import EcsWorkerFleet
from tenantml.domain.provisioning import FleetPolicy, Workload
from tenantml.errors import InvalidRequest, ServiceUnavailable
from tenantml.local.processes import claim_port
from tenantml.local.servers import Server
from tenantml.services.provisioner import Provisioner
from tests.support.moto import MOTO_REGION, moto_credentials, running_moto
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def credentials() -> AwsCredentials:
    return moto_credentials()


@pytest.fixture
def ecs(moto: Server, credentials: AwsCredentials) -> Any:
    """A boto3 ECS client of the test's own, to set the scene and to check what the backend did."""
    return credentials.get_boto3_session().client("ecs", endpoint_url=moto.url)


@pytest.fixture
def cluster(ecs: Any) -> str:
    """A cluster with a worker service per class: small at 1, large at 0."""
    name = f"tenantml-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=name)
    ecs.register_task_definition(
        family="tenantml-worker",
        containerDefinitions=[{"name": "worker", "image": "prefecthq/prefect:3-python3.11", "memory": 512}],
    )
    for worker_class, count in (("small", 1), ("large", 0)):
        ecs.create_service(
            cluster=name, serviceName=f"worker-{worker_class}", taskDefinition="tenantml-worker", desiredCount=count
        )
    return name


def fleet_for(credentials: AwsCredentials, moto: Server, cluster: str, **services: str) -> EcsWorkerFleet:
    names = services or {"small": "worker-small", "large": "worker-large"}
    return EcsWorkerFleet(credentials, cluster, names, endpoint_url=moto.url)


def desired_count(ecs: Any, cluster: str, service: str) -> int:
    [described] = ecs.describe_services(cluster=cluster, services=[service])["services"]
    return int(described["desiredCount"])


def test_counts_are_the_services_desired_counts(credentials: AwsCredentials, moto: Server, cluster: str) -> None:
    assert fleet_for(credentials, moto, cluster).counts() == {"small": 1, "large": 0}


def test_scale_sets_the_desired_count_it_was_asked_for(
    credentials: AwsCredentials, moto: Server, cluster: str, ecs: Any
) -> None:
    fleet = fleet_for(credentials, moto, cluster)
    fleet.scale("large", 3)
    fleet.scale("small", 0)
    wait_for(lambda: desired_count(ecs, cluster, "worker-large") == 3, DEADLINE_S, "worker-large at 3")
    wait_for(lambda: desired_count(ecs, cluster, "worker-small") == 0, DEADLINE_S, "worker-small at 0")
    assert fleet.counts() == {"small": 0, "large": 3}


def test_services_are_found_by_arn_too(credentials: AwsCredentials, moto: Server, cluster: str, ecs: Any) -> None:
    [small] = ecs.describe_services(cluster=cluster, services=["worker-small"])["services"]
    fleet = fleet_for(credentials, moto, cluster, small=small["serviceArn"])
    fleet.scale("small", 2)
    wait_for(lambda: fleet.counts() == {"small": 2}, DEADLINE_S, "small at 2 through its ARN")


def test_the_provisioner_scales_an_ecs_service_to_the_backlog(
    credentials: AwsCredentials, moto: Server, cluster: str, ecs: Any
) -> None:
    class Backlog:
        def workload(self, completed_since: datetime) -> Mapping[str, Workload]:
            return {"small": Workload(pending=5, running=1)}

    policies = {"small": FleetPolicy(minimum=0, maximum=4), "large": FleetPolicy(minimum=0, maximum=2)}
    provisioner = Provisioner(fleet_for(credentials, moto, cluster), Backlog(), policies)
    large, small = provisioner.tick(datetime.now(UTC))
    assert (small.current, small.desired, large.desired) == (1, 4, 0), small.reason
    wait_for(lambda: desired_count(ecs, cluster, "worker-small") == 4, DEADLINE_S, "worker-small at 4")


def test_a_missing_service_is_named_with_its_cluster(credentials: AwsCredentials, moto: Server, cluster: str) -> None:
    fleet = fleet_for(credentials, moto, cluster, small="worker-small", large="worker-huge")
    with pytest.raises(ServiceUnavailable, match=rf"{cluster}.*worker-huge \(MISSING\)"):
        fleet.counts()


def test_a_missing_cluster_is_named_with_what_to_check(credentials: AwsCredentials, moto: Server) -> None:
    fleet = fleet_for(credentials, moto, "no-such-cluster")
    expected = r"'worker-small' in cluster 'no-such-cluster'.*ClusterNotFound.*check"
    with pytest.raises(ServiceUnavailable, match=expected):
        fleet.scale("small", 1)


def test_an_unreachable_endpoint_names_it(credentials: AwsCredentials) -> None:
    nowhere = f"http://127.0.0.1:{claim_port('nothing', 0)}"
    fleet = EcsWorkerFleet(credentials, "tenantml", {"small": "worker-small"}, endpoint_url=nowhere)
    expected = rf"cluster 'tenantml' \({MOTO_REGION} at {nowhere}\).*check the endpoint"
    with pytest.raises(ServiceUnavailable, match=expected):
        fleet.counts()


def test_bad_requests_name_the_value(credentials: AwsCredentials, moto: Server, cluster: str, ecs: Any) -> None:
    fleet = fleet_for(credentials, moto, cluster)
    with pytest.raises(InvalidRequest, match=r"unknown worker class 'huge': choose one of large, small"):
        fleet.scale("huge", 1)
    with pytest.raises(InvalidRequest, match=r"desired count -1 for 'small' is negative"):
        fleet.scale("small", -1)
    with pytest.raises(InvalidRequest, match=r"no ECS service for any worker class in cluster 'c'"):
        EcsWorkerFleet(credentials, "c", {})
    with pytest.raises(InvalidRequest, match=r"ECS service 'w' is named for more than one worker class"):
        EcsWorkerFleet(credentials, "c", {"small": "w", "large": "w"})
    assert desired_count(ecs, cluster, "worker-small") == 1
