"""Memory kills escalate everywhere (claim 7): each platform's mark, read from what it really reports,
and the supervisor turning a crash or a lost worker so marked into a resource failure."""

from __future__ import annotations

from tenantml.adapters.store import Store
from tenantml.domain import memory_kills
from tenantml.domain.failover import UuidEvent, memory_kill
from tenantml.domain.request import AttemptEnd, TrainingRequest, WorkerClass
from tenantml.ports import RunState
from tests.support.supervisor_script import Loop, Script, ends

TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/tenantml/0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"

# describe_tasks' answer for a Fargate task whose container outgrew its memory (abridged)
ECS_STOPPED_TASK = {
    "taskArn": TASK_ARN,
    "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/tenantml",
    "lastStatus": "STOPPED",
    "desiredStatus": "STOPPED",
    "stopCode": "EssentialContainerExited",
    "stoppedReason": "Essential container in task exited",
    "containers": [{
        "name": "prefect",
        "lastStatus": "STOPPED",
        "exitCode": 137,
        "reason": "OutOfMemoryError: Container killed due to memory usage",
    }],
}

# the same stop as EventBridge's "ECS Task State Change" detail, when the task's memory is the limit
ECS_EVENT_DETAIL = {
    "taskArn": TASK_ARN,
    "lastStatus": "STOPPED",
    "stopCode": "TaskFailedToStart",
    "stoppedReason": "OutOfMemoryError: Container killed due to memory usage",
    "containers": [{"name": "prefect", "lastStatus": "STOPPED"}],
}

ECS_SPOT_INTERRUPTION = {
    "taskArn": TASK_ARN,
    "lastStatus": "STOPPED",
    "stopCode": "SpotInterruption",
    "stoppedReason": "Your Spot Task was interrupted.",
    "containers": [{"name": "prefect", "lastStatus": "STOPPED", "exitCode": 143}],
}

K8S_OOM_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "tenantml-training-abc12-xyz9q", "namespace": "tenantml"},
    "status": {
        "phase": "Failed",
        "containerStatuses": [{
            "name": "prefect-job",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                     "startedAt": "2026-12-01T16:00:00Z", "finishedAt": "2026-12-01T16:01:10Z"}},
        }],
    },
}

K8S_ERROR_POD = {
    "metadata": {"name": "tenantml-training-abc12-q8w7e"},
    "status": {"phase": "Failed", "containerStatuses": [{
        "name": "prefect-job", "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }]},
}

CGROUP_V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
CGROUP_V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"


def test_ecs_out_of_memory_stops_are_memory_kills_and_other_stops_are_not() -> None:
    reason = memory_kills.ecs_task(ECS_STOPPED_TASK)
    assert reason == (f"killed for memory by ECS (task {TASK_ARN}: "
                      "OutOfMemoryError: Container killed due to memory usage)")
    assert memory_kills.ecs_task(ECS_EVENT_DETAIL) is not None
    assert memory_kills.ecs_task(ECS_SPOT_INTERRUPTION) is None


def test_kubernetes_oom_killed_containers_are_memory_kills_and_errors_are_not() -> None:
    reason = memory_kills.kubernetes_pod(K8S_OOM_POD)
    assert reason == ("killed for memory by Kubernetes (pod tenantml-training-abc12-xyz9q, container prefect-job: "
                      "OOMKilled, exit code 137)")
    assert memory_kills.kubernetes_pod(K8S_OOM_POD["status"]) is not None  # a bare status, as events carry it
    restarted = {"containerStatuses": [{"name": "c", "state": {"running": {}},
                                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}
    assert memory_kills.kubernetes_pod(restarted) is not None
    assert memory_kills.kubernetes_pod(K8S_ERROR_POD) is None


def test_kernel_kill_counts_are_read_from_both_cgroup_versions() -> None:
    assert memory_kills.oom_kills(CGROUP_V1_OOM_CONTROL) == 1
    assert memory_kills.oom_kills(CGROUP_V2_MEMORY_EVENTS) == 1
    assert memory_kills.oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0  # a kernel older than 4.13
    assert memory_kills.kernel("/sys/fs/cgroup/memory/x", 0, 1) == (
        "killed for memory by the kernel (cgroup /sys/fs/cgroup/memory/x: oom_kill 1)")
    assert memory_kills.kernel("/sys/fs/cgroup/memory/x", 1, 1) is None


def test_crash_messages_that_name_a_memory_kill_become_resource_failures() -> None:
    # prefect-kubernetes' worker log and diagnosis line, and an ECS stop reason a worker relays
    oom = UuidEvent(AttemptEnd.CRASHED, "worker run failed: Container 'prefect-job' was killed due to "
                                        "out-of-memory (OOMKilled)")
    assert memory_kill(oom).end is AttemptEnd.RESOURCE_EXHAUSTED
    assert "Kubernetes" in memory_kill(oom).reason
    ecs = UuidEvent(AttemptEnd.HEARTBEAT_LOST, "OutOfMemoryError: Container killed due to memory usage")
    assert memory_kill(ecs).end is AttemptEnd.RESOURCE_EXHAUSTED
    plain = UuidEvent(AttemptEnd.CRASHED, "worker run failed: Flow run infrastructure exited with non-zero "
                                          "status code -9.")
    assert memory_kill(plain) == plain
    assert memory_kill(plain, lambda: "killed for memory by the kernel (cgroup c: oom_kill 1)").reason == (
        "killed for memory by the kernel (cgroup c: oom_kill 1); seen as: " + plain.reason)
    moved = UuidEvent(AttemptEnd.MOVED, "moved by an operator")
    assert memory_kill(moved, lambda: "killed") == moved  # only crashes and lost workers are judged


class Witness:
    def __init__(self) -> None:
        self.killed: dict[str, str] = {}
        self.asked: list[str] = []

    def memory_kill(self, flow_run_id: str) -> str | None:
        self.asked.append(flow_run_id)
        return self.killed.get(flow_run_id)


def crash_once(store: Store, request_id: str, killed: str | None,
               hook: bool = False) -> tuple[TrainingRequest, Loop, Witness]:
    """The first attempt's run ends with SIGKILL's status (``killed``: what the witness saw), the next
    completes; with ``hook``, the worker's on_crashed hook reports the crash first, as Prefect runs it."""
    master, witness = Loop(store, budget=1), Witness()
    master.supervisor.memory_kills = witness

    def script() -> Script:
        master.worker(1).beat(1)
        yield
        if killed is not None:
            witness.killed["run-1"] = killed
        if hook:
            master.worker(1).report(AttemptEnd.CRASHED, "worker run crashed: Process exited with status code: -9.")
        master.dispatcher.states["run-1"] = RunState.FAILED, "Flow run infrastructure exited with status -9"
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    return master.run(request_id, script()), master, witness


def test_a_kernel_memory_kill_the_witness_saw_resumes_on_the_large_class(store: Store, request_id: str) -> None:
    final, master, _ = crash_once(store, request_id, "killed for memory by the kernel (cgroup small/run-1: oom_kill 1)")
    assert [d.worker_class for d in master.dispatcher.dispatches] == [WorkerClass.SMALL, WorkerClass.LARGE]
    assert ends(final) == [AttemptEnd.RESOURCE_EXHAUSTED, AttemptEnd.COMPLETED]
    assert final.attempts[0].reason is not None
    assert final.attempts[0].reason.startswith("killed for memory by the kernel (cgroup small/run-1: oom_kill 1)")


def test_a_memory_kill_is_recorded_as_such_even_when_the_crash_hook_reported_a_crash_first(
    store: Store, request_id: str
) -> None:
    final, master, _ = crash_once(store, request_id, "killed for memory by the kernel (cgroup c: oom_kill 1)", hook=True)
    assert [d.worker_class for d in master.dispatcher.dispatches] == [WorkerClass.SMALL, WorkerClass.LARGE]
    assert ends(final) == [AttemptEnd.RESOURCE_EXHAUSTED, AttemptEnd.COMPLETED]
    assert (final.attempts[0].reason or "").startswith("killed for memory by the kernel")


def test_a_crash_no_witness_saw_stays_a_crash_on_the_same_class(store: Store, request_id: str) -> None:
    final, master, witness = crash_once(store, request_id, None)
    assert [d.worker_class for d in master.dispatcher.dispatches] == [WorkerClass.SMALL, WorkerClass.SMALL]
    assert ends(final) == [AttemptEnd.CRASHED, AttemptEnd.COMPLETED]
    assert witness.asked == ["run-1"]
