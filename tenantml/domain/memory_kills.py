"""Memory kills: an attempt its platform killed for memory is a resource failure (claim 7).

A training that outgrows its machine does not always raise a ``MemoryError`` the worker can
report: more often the platform kills the process outright, and to the supervisor that looks like
any other crash or lost heartbeat, which would resume on the same class and be killed again. Each
platform leaves a mark, read here from what it reports, with nothing but the standard library:

- **ECS** stops the task with ``stoppedReason`` (or a container's ``reason``) starting
  ``OutOfMemoryError: Container killed due to memory usage``, in ``describe_tasks`` and in the
  task state-change event its EventBridge rule sends;
- **Kubernetes** ends the container with ``state.terminated.reason`` (``lastState`` once it
  restarted) ``OOMKilled``; prefect-kubernetes' observer copies it into its pod events as the
  ``kubernetes.reason`` resource label;
- **the kernel** (a local worker's memory cgroup) counts each kill in ``oom_kill N``: cgroup v1's
  ``memory.oom_control``, v2's ``memory.events``.

Each function returns the reason to record (the attempt's end is then ``RESOURCE_EXHAUSTED``,
which :func:`tenantml.domain.failover.next_worker_class` escalates), or None when the mark is absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ECS_MARK", "KUBERNETES_MARK", "ecs_task", "in_message", "kernel", "kubernetes_pod", "oom_kills"]

ECS_MARK = "OutOfMemoryError"
KUBERNETES_MARK = "OOMKilled"


def in_message(message: str) -> str | None:
    """A crash message (a run's state message, a worker's log line) that names a platform memory kill."""
    if ECS_MARK in message:
        return f"killed for memory by ECS ({message.strip()})"
    if KUBERNETES_MARK in message:
        return f"killed for memory by Kubernetes ({message.strip()})"
    return None


def ecs_task(task: Mapping[str, Any]) -> str | None:
    """A stopped ECS task (``describe_tasks``' task, or an ECS Task State Change event's ``detail``)."""
    reasons = [str(task.get("stoppedReason") or "")]
    reasons += [str(container.get("reason") or "") for container in task.get("containers") or []]
    for reason in reasons:
        if ECS_MARK in reason:
            arn = task.get("taskArn") or "?"
            return f"killed for memory by ECS (task {arn}: {reason})"
    return None


def _terminated(statuses: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for status in statuses:
        for key in ("state", "lastState"):
            terminated = (status.get(key) or {}).get("terminated") or {}
            if terminated:
                yield str(status.get("name") or "?"), terminated


def kubernetes_pod(pod: Mapping[str, Any]) -> str | None:
    """A pod (its JSON as the API returns it, or just its ``status``) with a container ended ``OOMKilled``."""
    status = pod.get("status", pod)
    metadata = pod.get("metadata") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for container, terminated in _terminated(statuses):
        if terminated.get("reason") == KUBERNETES_MARK:
            code = terminated.get("exitCode", "?")
            return (f"killed for memory by Kubernetes (pod {metadata.get('name', '?')}, container {container}: "
                    f"{KUBERNETES_MARK}, exit code {code})")
    return None


def oom_kills(text: str) -> int:
    """The ``oom_kill`` count of a cgroup's ``memory.oom_control`` (v1) or ``memory.events`` (v2) text.

    0 when the line is absent: kernels before 4.13 do not count kills in v1.
    """
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def kernel(cgroup: str, before: int, after: int) -> str | None:
    """The kernel's OOM killer struck in ``cgroup`` while its count went from ``before`` to ``after``."""
    if after > before:
        return f"killed for memory by the kernel (cgroup {cgroup}: oom_kill {after})"
    return None
