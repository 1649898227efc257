"""The reconciler starts a new master for requests whose master went silent, including finished
requests that were never finalized (so their model was never promoted)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tenantml.domain.request import Lease, RequestStatus, TrainingRequest, TrainingSpec, WorkerClass
from tenantml.services.reconcile import reconcile

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _store(sqlite_url: str) -> Store:
    store = Store(create_database(sqlite_url))
    store.add_tenant("acme", "k" * 64, T0)
    return store


def _request(store: Store, model: str, status: RequestStatus = RequestStatus.PENDING) -> str:
    request = TrainingRequest(id=str(uuid.uuid4()), spec=TrainingSpec("acme", model, "d.csv", "y", "sgd_classifier"),
                              status=status, created_at=T0, updated_at=T0)
    store.add_request(request)
    return request.id


def test_silent_master_is_replaced_once_per_outage(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    request_id = _request(store, "m")
    store.claim_master(request_id, "master-1", T0)
    started: list[tuple[str, str]] = []

    assert reconcile(store, lambda *a: started.append(a), T0 + timedelta(seconds=5), stale_after_s=15) == []
    assert reconcile(store, lambda *a: started.append(a), T0 + timedelta(seconds=20), stale_after_s=15) == [request_id]
    # the restart claims a grace period: the next pass does not start a second master
    assert reconcile(store, lambda *a: started.append(a), T0 + timedelta(seconds=25), stale_after_s=15) == []
    assert len(started) == 1 and started[0][0] == request_id


def test_finished_but_unfinalized_request_gets_a_master_and_finalized_one_does_not(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    done = _request(store, "done")
    epoch = store.start_attempt(done, 0, "w", WorkerClass.SMALL, T0)
    store.complete(Lease(done, "w", epoch), "1", {}, T0)
    finalized = _request(store, "finalized")
    epoch = store.start_attempt(finalized, 0, "w2", WorkerClass.SMALL, T0)
    store.complete(Lease(finalized, "w2", epoch), "1", {}, T0)
    store.mark_finalized(finalized, T0)

    assert reconcile(store, lambda *a: None, T0 + timedelta(minutes=1), stale_after_s=15) == [done]
