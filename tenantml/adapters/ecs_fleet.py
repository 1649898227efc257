"""The provisioner's ECS backend: one ECS service of Prefect workers per worker class.

Each class's workers run as the tasks of an ECS service (e.g. ``tenantml-worker-small``, its task a
``prefect worker start --pool training --work-queue small``); the fleet's size is the service's
desired count, which ECS keeps up, replacing a task that dies. :class:`EcsWorkerFleet` reads those
counts with ``describe_services`` and sets one with ``update_service``. The boto3 session comes from
prefect-aws's :class:`~prefect_aws.AwsCredentials` block, so the workers' pool and this backend use
the same credentials; ``endpoint_url`` points it at an ECS-compatible stand-in (moto's server in the
tests), as the block's own client parameters do for S3.

Scaling in is not a drain yet: ECS stops the tasks it picks with SIGTERM, and a Prefect worker
passes that to its flow runs (PrefectHQ/prefect#22528). The way to drain on ECS is task scale-in
protection (``UpdateTaskProtection``): a worker with a run protects its own task, so that ECS
removes only idle ones, as Ray removes only idle nodes. Until then, scale ECS down only when idle.

botocore's errors stop here: each becomes :class:`~tenantml.errors.ServiceUnavailable` naming the
cluster, the service and what to check.

:class:`EcsMemoryKills` is the supervisor's witness of ECS memory kills (claim 7): prefect-aws's
ECS worker records a flow run's task as its infrastructure pid (``<cluster>::<task ARN>``) and
returns at once; its observer marks a crashed task's run with only "containers stopped with a
non-zero exit code". ECS itself says why: ``describe_tasks`` keeps a stopped task's
``stoppedReason`` and each container's ``reason`` (``OutOfMemoryError: Container killed due to
memory usage``) for about an hour, which :func:`tenantml.domain.memory_kills.ecs_task` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prefect_aws import AwsCredentials

from tenantml.domain.memory_kills import ecs_task
from tenantml.errors import InvalidRequest, ServiceUnavailable

__all__ = ["EcsMemoryKills", "EcsWorkerFleet"]

log = logging.getLogger(__name__)

_DESCRIBE_BATCH = 10  # describe_services takes at most ten services a call
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})


class _EcsClient:
    """An ECS client in ``cluster`` from prefect-aws's credentials block, and botocore's errors translated."""

    permissions = "ecs:DescribeServices and ecs:UpdateService"

    def __init__(self, credentials: AwsCredentials, cluster: str, endpoint_url: str | None = None) -> None:
        self.cluster = cluster
        self._credentials = credentials
        self._endpoint_url = endpoint_url
        self._client: Any = None

    def _ecs(self) -> Any:
        """The ECS client, built on first use from the block's session and client parameters."""
        if self._client is None:
            params = self._credentials.aws_client_parameters.get_params_override()
            params.setdefault("config", _CLIENT_CONFIG)
            if self._endpoint_url is not None:
                params["endpoint_url"] = self._endpoint_url
            with self._calls("creating the ECS client"):
                self._client = self._credentials.get_boto3_session().client("ecs", **params)
        return self._client

    @contextmanager
    def _calls(self, doing: str, service: str | None = None) -> Iterator[None]:
        """Translate what botocore raises while ``doing`` something (to ``service``)."""
        where = f"ECS cluster {self.cluster!r}"
        if service is not None:
            where = f"ECS service {service!r} in cluster {self.cluster!r}"
        region = self._credentials.region_name or "the default region"
        where += f" ({region}{'' if self._endpoint_url is None else ' at ' + self._endpoint_url})"
        try:
            yield
        except ClientError as err:
            error = err.response.get("Error", {})
            raise ServiceUnavailable(
                f"{where}: {doing} failed: {error.get('Code', '?')}: {error.get('Message', '')}; check that the "
                f"cluster and service exist in that region and that the credentials allow {self.permissions}"
            ) from err
        except BotoCoreError as err:
            raise ServiceUnavailable(
                f"{where}: {doing} failed: {type(err).__name__}: {err}; check the endpoint URL, the region "
                "and the AWS credentials block"
            ) from err


class EcsWorkerFleet(_EcsClient):
    """The workers of each class as the desired count of its ECS service in ``cluster``.

    ``services`` maps a worker class to its service's name (or ARN). Implements
    :class:`tenantml.ports.WorkerFleet`.
    """

    def __init__(
        self,
        credentials: AwsCredentials,
        cluster: str,
        services: Mapping[str, str],
        endpoint_url: str | None = None,
    ) -> None:
        if not services:
            raise InvalidRequest(f"no ECS service for any worker class in cluster {cluster!r}: name one per class")
        shared = sorted({name for name in services.values() if list(services.values()).count(name) > 1})
        if shared:
            raise InvalidRequest(
                f"ECS service {', '.join(map(repr, shared))} is named for more than one worker class: "
                "give each class a service of its own"
            )
        super().__init__(credentials, cluster, endpoint_url)
        self.services = dict(services)

    def counts(self) -> dict[str, int]:
        """Each class's desired count (what ECS keeps running, or is starting)."""
        by_service = {service: worker_class for worker_class, service in self.services.items()}
        names = list(by_service)
        found: dict[str, int] = {}
        for start in range(0, len(names), _DESCRIBE_BATCH):
            batch = names[start:start + _DESCRIBE_BATCH]
            with self._calls("describe_services", ", ".join(batch)):
                answer = self._ecs().describe_services(cluster=self.cluster, services=batch)
            missing = [f"{failure.get('arn', '?')} ({failure.get('reason', '?')})" for failure in answer["failures"]]
            for service in answer["services"]:
                if service["status"] != "ACTIVE":
                    missing.append(f"{service['serviceName']} ({service['status']})")
                    continue
                found[_class_of(service, by_service)] = int(service["desiredCount"])
            if missing:
                raise ServiceUnavailable(
                    f"ECS cluster {self.cluster!r} has no active service {', '.join(missing)}: create the "
                    "workers' services there, or correct the service names given for the worker classes"
                )
        return found

    def scale(self, worker_class: str, desired: int) -> None:
        """Set ``worker_class``'s service's desired count to ``desired``."""
        if worker_class not in self.services:
            raise InvalidRequest(
                f"unknown worker class {worker_class!r}: choose one of {', '.join(sorted(self.services))}"
            )
        if desired < 0:
            raise InvalidRequest(f"desired count {desired} for {worker_class!r} is negative: give 0 or more")
        service = self.services[worker_class]
        with self._calls("update_service", service):
            self._ecs().update_service(cluster=self.cluster, service=service, desiredCount=desired)

def _class_of(service: Mapping[str, Any], by_service: Mapping[str, str]) -> str:
    """The class whose configured name (or ARN) is this described service."""
    for name in (service["serviceName"], service["serviceArn"]):
        if name in by_service:
            return by_service[name]
    raise ServiceUnavailable(f"ECS answered for service {service['serviceArn']!r}, which no worker class names")


class EcsMemoryKills(_EcsClient):
    """Whether ECS stopped a flow run's task for memory (the :class:`tenantml.ports.MemoryKills` port).

    ``infrastructure_pid`` reads a flow run's infrastructure pid (by default from the Prefect API);
    a run of another pool (no ``::`` in it) or a task in another cluster has nothing to tell. An ECS
    that does not answer is logged and taken as no answer: the attempt then resumes as a crash would.
    """

    permissions = "ecs:DescribeTasks"

    def __init__(self, credentials: AwsCredentials, cluster: str, endpoint_url: str | None = None,
                 infrastructure_pid: Callable[[str], str | None] | None = None) -> None:
        super().__init__(credentials, cluster, endpoint_url)
        self._infrastructure_pid = infrastructure_pid or _prefect_infrastructure_pid

    def memory_kill(self, flow_run_id: str) -> str | None:
        pid = self._infrastructure_pid(flow_run_id) or ""
        cluster, _, task_arn = pid.partition("::")
        if not task_arn or cluster.rpartition("/")[2] != self.cluster.rpartition("/")[2]:
            return None
        try:
            with self._calls("describe_tasks", None):
                answer = self._ecs().describe_tasks(cluster=self.cluster, tasks=[task_arn])
        except ServiceUnavailable as err:
            log.warning("flow run %s: cannot tell whether ECS stopped it for memory: %s", flow_run_id, err)
            return None
        for task in answer.get("tasks", []):
            if (reason := ecs_task(task)) is not None:
                return reason
        return None


def _prefect_infrastructure_pid(flow_run_id: str) -> str | None:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).infrastructure_pid
