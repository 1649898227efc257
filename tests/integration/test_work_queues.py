"""No work queue without a worker: the Prefect UI marks such a queue red ("not ready") for good.

Prefect gives every pool a ``default`` queue that cannot be deleted; the training pool's workers
poll ``small`` and ``large`` only, so its ``default`` queue used to show the red "!".
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import WorkQueueStatus
from prefect.settings import PREFECT_API_URL, temporary_settings

from tenantml.local.project import project_dir, work_pool_template
from tenantml.local.workers import create_work_pools
from tests.support.platform import RunningPlatform
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _queues(platform: RunningPlatform, pool: str) -> dict[str, tuple[WorkQueueStatus | None, bool]]:
    with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        return {q.name: (q.status, q.is_paused) for q in client.read_work_queues(work_pool_name=pool)}


def test_every_queue_of_both_pools_is_polled_by_a_worker(platform: RunningPlatform) -> None:
    pools = {platform.settings.prefect.master_pool: {"default"}, platform.settings.prefect.training_pool: {"small", "large"}}

    def all_ready() -> dict[str, dict[str, tuple[WorkQueueStatus | None, bool]]] | None:
        found = {pool: _queues(platform, pool) for pool in pools}
        ready = all(status is WorkQueueStatus.READY for queues in found.values() for status, _ in queues.values())
        return found if ready else None

    try:
        found = wait_for(all_ready, 120, "every work queue to be polled (status READY)", every_s=2)
    except AssertionError:
        raise AssertionError(f"queues: { {pool: _queues(platform, pool) for pool in pools} }") from None
    assert {pool: set(queues) for pool, queues in found.items()} == pools


def test_a_home_made_before_keeps_its_queues_and_pauses_the_unused_default(platform: RunningPlatform) -> None:
    """A home whose training pool already had ``small`` beside ``default``: ``default`` is paused
    (the UI shows it paused, not red); a fresh pool's ``default`` became ``small``; both idempotent."""
    suffix = uuid.uuid4().hex[:8]
    old = platform.settings.prefect.model_copy(update={"training_pool": f"old-{suffix}", "master_pool": f"om-{suffix}"})
    fresh = platform.settings.prefect.model_copy(update={"training_pool": f"new-{suffix}", "master_pool": f"nm-{suffix}"})
    template = work_pool_template(project_dir())

    async def make_old_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=old.training_pool, type="process", base_job_template=template))
            await client.create_work_queue(name="small", work_pool_name=old.training_pool)

    with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url}):
        asyncio.run(make_old_pool())
        for _ in range(2):
            asyncio.run(create_work_pools(platform.prefect_api_url, old, template))
            asyncio.run(create_work_pools(platform.prefect_api_url, fresh, template))

    old_queues = _queues(platform, old.training_pool)
    assert set(old_queues) == {"default", "small", "large"}
    assert old_queues["default"][1] is True and not old_queues["small"][1] and not old_queues["large"][1]
    fresh_queues = _queues(platform, fresh.training_pool)
    assert set(fresh_queues) == {"small", "large"} and not any(paused for _, paused in fresh_queues.values())
    assert set(_queues(platform, fresh.master_pool)) == {"default"}
    with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url}), get_client(sync_client=True) as client:
        pool = client.read_work_pool(fresh.training_pool)
        assert client.read_work_queue_by_name("small", work_pool_name=fresh.training_pool).id == pool.default_queue_id
