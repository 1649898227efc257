"""Find requests whose training master is gone, and start a new master for each.

A master heartbeats into its request's record while it watches. When that heartbeat stops (the
master's process or machine died) the request would sit forever, or, if its worker finished
meanwhile, never be promoted; the reconciler starts a new master, which rebuilds its view from
the records and carries on (or just finalizes). Runs in `tenantml up` every few
seconds and as the scheduled `training-reconciler` flow in production.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tenantml.ports import MasterLauncher, MasterStore

__all__ = ["orphaned_requests", "reconcile"]


def orphaned_requests(store: MasterStore, now: datetime, stale_after_s: float) -> list[str]:
    cutoff = now - timedelta(seconds=stale_after_s)
    found = []
    for request in store.needing_master():
        seen = request.master_heartbeat_at or request.created_at
        if seen < cutoff:
            found.append(request.id)
    return found


def reconcile(
    store: MasterStore, start_master: MasterLauncher, now: datetime, stale_after_s: float = 15.0
) -> list[str]:
    """Start a master for each orphaned request; returns their ids.

    ``start_master(request_id, idempotency_key)``: the key changes with the stale heartbeat, so a
    second reconciler pass over the same outage does not start a second master.
    """
    restarted = []
    for request_id in orphaned_requests(store, now, stale_after_s):
        request = store.get_request(request_id)
        seen = (request.master_heartbeat_at or request.created_at).isoformat()
        start_master(request_id, f"master:{request_id}:{seen}")
        store.claim_master(request_id, "pending-master", now)  # a grace period until the new master claims it
        restarted.append(request_id)
    return restarted
