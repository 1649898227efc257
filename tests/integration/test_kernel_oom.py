"""A training the kernel kills for memory on the small class resumes on the large class (claim 7).

A platform of its own, whose small class's flow runs each get a 300 MiB memory cgroup
(``TENANTML_PREFECT__SMALL_MEMORY_MB``) and no address-space limit, so nothing but the kernel
stops a training that outgrows it: no MemoryError, just SIGKILL. Skipped, with the reason, where
this process may not create memory cgroups.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantml.domain.request import AttemptEnd, RequestStatus, WorkerClass
from tenantml.local import cgroups
from tenantml.settings import load_settings
from tests.support.platform import RunningPlatform, start_platform

pytestmark = [pytest.mark.integration, pytest.mark.system]

SMALL_MEMORY_MB = 300


def _cgroups_or_skip() -> None:
    with tempfile.TemporaryDirectory(prefix="tenantml-cgroup-probe-") as home:
        try:
            _, folder = cgroups.class_folder(Path(home), "probe")
        except (OSError, LookupError) as err:
            pytest.skip(f"cannot create memory cgroups here, so no kernel OOM kill to test: {err}")
        folder.rmdir()
        folder.parent.rmdir()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    _cgroups_or_skip()
    settings = load_settings(
        home=tmp_path_factory.mktemp("home-oom"),
        training={"heartbeat_timeout_s": 3, "checkpoint_interval_s": 1, "attempt_budget": 2},
        prefect={"small_workers": 1, "large_workers": 1, "small_memory_mb": SMALL_MEMORY_MB},
        fleet={"provisioner": False},
    )
    embedded, running = start_platform(settings)
    try:
        yield running
    finally:
        embedded.stop()


def test_a_training_the_kernel_kills_for_memory_on_the_small_class_completes_on_the_large_class(
    limited: RunningPlatform,
) -> None:
    platform = limited
    tenant = platform.new_tenant()
    # 800k x 40 floats: 256 MB, twice that while loading, over the small class's 300 MiB
    admission = platform.submit(tenant, platform.wide_dataset(tenant, 800_000, 40), epochs=1, batch_size=200_000)

    final = platform.wait_done(admission.request_id, timeout_s=900)  # two attempts on a loaded machine
    assert final.status is RequestStatus.COMPLETED, final.reason
    first, second = final.attempts[0], final.attempts[-1]
    assert first.worker_class is WorkerClass.SMALL
    assert first.end is AttemptEnd.RESOURCE_EXHAUSTED, first.reason
    assert (first.reason or "").startswith("killed for memory by the kernel (cgroup "), first.reason
    assert "oom_kill 1" in (first.reason or "")
    assert second.worker_class is WorkerClass.LARGE and second.end is AttemptEnd.COMPLETED
    assert len(final.attempts) == 2
