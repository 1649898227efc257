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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prefect_aws import AwsCredentials

from tenantml.errors import InvalidRequest, ServiceUnavailable

__all__ = ["EcsWorkerFleet"]

_DESCRIBE_BATCH = 10  # describe_services takes at most ten services a call
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})


class EcsWorkerFleet:
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
        self.cluster = cluster
        self.services = dict(services)
        self._credentials = credentials
        self._endpoint_url = endpoint_url
        self._client: Any = None

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
                "cluster and service exist in that region and that the credentials allow "
                "ecs:DescribeServices and ecs:UpdateService"
            ) from err
        except BotoCoreError as err:
            raise ServiceUnavailable(
                f"{where}: {doing} failed: {type(err).__name__}: {err}; check the endpoint URL, the region "
                "and the AWS credentials block"
            ) from err


def _class_of(service: Mapping[str, Any], by_service: Mapping[str, str]) -> str:
    """The class whose configured name (or ARN) is this described service."""
    for name in (service["serviceName"], service["serviceArn"]):
        if name in by_service:
            return by_service[name]
    raise ServiceUnavailable(f"ECS answered for service {service['serviceArn']!r}, which no worker class names")
