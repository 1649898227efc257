"""The training supervisor as scheduler: slots, fair share, preemption through the heartbeat, limits.

Real store, fake dispatcher and clock (tests/support/supervisor_script.py). Workers are scripted:
a dispatched attempt beats until the test ends or completes it.
"""

from __future__ import annotations

from datetime import timedelta

from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, RequestStatus, WorkerClass
from tenantml.settings import SchedulerSettings
from tests.support.supervisor_script import Loop, Script, pending_request


def queue(store: Store, tenant: str, count: int, loop: Loop, new_tenant: bool = True) -> list[str]:
    ids = []
    for number in range(count):
        ids.append(pending_request(store, tenant, f"m{number}", at=loop.wall + timedelta(milliseconds=number),
                                   new_tenant=new_tenant and number == 0))
    return ids


def dispatched(loop: Loop) -> list[str]:
    return [d.request_id for d in loop.dispatcher.dispatches]


def test_a_run_is_dispatched_only_into_a_free_slot_and_a_freed_slot_is_filled_at_once(store: Store) -> None:
    loop = Loop(store, slots={"small": 2, "large": 0})
    ids = queue(store, "a", 5, loop)
    loop.tick()
    assert dispatched(loop) == ids[:2]  # first come, first served within the tenant
    assert {store.get_request(i).status for i in ids[2:]} == {RequestStatus.PENDING}
    loop.step()
    loop.worker(1).complete()
    loop.tick()
    assert dispatched(loop) == ids[:3]  # the slot the completion freed, in the same tick


def test_a_newcomer_gets_the_next_free_slot_before_the_backlog_of_a_tenant_that_holds_more(store: Store) -> None:
    loop = Loop(store, slots={"small": 2, "large": 0}, scheduler=SchedulerSettings(preemption=False))
    backlog = queue(store, "big", 6, loop)
    loop.tick()
    loop.step()
    [small] = queue(store, "small", 1, loop)
    loop.tick()
    assert dispatched(loop) == backlog[:2]  # full: nothing is preempted when preemption is off
    loop.worker(1).complete()
    loop.tick()
    assert dispatched(loop) == [*backlog[:2], small]


def test_a_tenant_over_its_share_is_preempted_through_the_heartbeat_and_loses_nothing(store: Store) -> None:
    loop = Loop(store, slots={"small": 2, "large": 0}, scheduler=SchedulerSettings(preempt_after_s=30))
    backlog = queue(store, "big", 4, loop)
    loop.tick()
    queued_at = loop.now
    [small] = queue(store, "small", 1, loop)
    asked: list[tuple[float, str]] = []

    def workers() -> Script:
        step = 0
        while not asked:
            step += 1
            for number in (1, 2):  # both of big's attempts train and checkpoint as they go
                worker = loop.worker(number)
                if number == 2 and step % 4 == 0:
                    worker.checkpoint(step)
                handback = store.heartbeat(worker.lease, step, 20, loop.wall)
                if handback is not None:
                    asked.append((loop.now, handback))
            yield
        loop.worker(2).checkpoint(step + 1)  # the SIGTERM path: commit, then hand back
        loop.worker(2).report(AttemptEnd.PREEMPTED, f"preempted at step {step + 1}: {asked[0][1]}")
        yield from loop.until_dispatched(3)

    loop.run_until(lambda: len(loop.dispatcher.dispatches) == 3, workers())
    [(at, reason)] = asked
    assert 30 <= at - queued_at <= 30 + 2 * 0.5 + 1.0  # after the delay, at the next heartbeat
    assert "tenant 'small' has waited" in reason and "tenant 'big' holds 2" in reason
    assert dispatched(loop) == [*backlog[:2], small]  # the slot went to the waiting tenant
    preempted = store.get_request(backlog[1])  # the most recently started attempt of big
    assert preempted.status is RequestStatus.WAITING and preempted.worker_uuid is None
    assert preempted.attempts[0].end is AttemptEnd.PREEMPTED and preempted.failovers == 0
    assert store.get_request(backlog[0]).status is RequestStatus.RUNNING  # one slot each now: no more preemption
    loop.worker(3).complete()
    loop.tick()
    resumed = store.get_request(backlog[1])  # it waited since before big's newer requests: it goes first
    assert dispatched(loop)[-1] == backlog[1] and resumed.current_attempt is not None
    assert resumed.current_attempt.resume_step == preempted.checkpoint.step  # type: ignore[union-attr]


def test_a_running_limit_holds_across_classes_and_leaves_only_what_it_forbids_idle(store: Store) -> None:
    loop = Loop(store, slots={"small": 3, "large": 1}, default_max_running=1)
    limited = queue(store, "a", 3, loop)
    loop.tick()
    assert dispatched(loop) == limited[:1]
    [other] = queue(store, "b", 1, loop)
    loop.step()
    loop.tick()
    assert dispatched(loop) == [limited[0], other]  # b's own limit is the default too: one each
    store.set_running_limit("a", 2)
    loop.now += 10  # past the limits' refresh
    loop.tick()
    assert dispatched(loop) == [limited[0], other, limited[1]]


def test_an_escalated_request_waits_for_a_large_slot(store: Store, request_id: str) -> None:
    loop = Loop(store, slots={"small": 2, "large": 0}, budget=1)
    loop.tick()
    loop.worker(1).report(AttemptEnd.RESOURCE_EXHAUSTED, "out of memory")
    for _ in range(5):
        loop.step()
        loop.tick()
    request = store.get_request(request_id)
    assert (request.status, request.worker_class) == (RequestStatus.WAITING, WorkerClass.LARGE)
    assert len(loop.dispatcher.dispatches) == 1  # no large worker: it waits (the provisioner starts one)
    loop.capacity = loop.supervisor.capacity = type(loop.capacity)({"small": 2, "large": 1})
    loop.tick()
    assert [d.worker_class for d in loop.dispatcher.dispatches] == [WorkerClass.SMALL, WorkerClass.LARGE]
