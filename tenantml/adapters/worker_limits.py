"""What a worker class may use, enforced on the worker's own process (claim 7's "more resources").

The small class gets an address-space limit (``RLIMIT_AS``) of ``small_memory_limit_mb`` beyond
what the process holds when training starts, so that a training too big for it fails with a
``MemoryError`` the worker can classify as a resource failure, and the next attempt escalates to
the large class (:func:`tenantml.domain.failover.next_worker_class`). The large class has no limit
of ours; in the cloud its size is the work pool's (the ECS task's memory, a pod's limits).
"""

from __future__ import annotations

import resource

from tenantml.domain.request import WorkerClass
from tenantml.settings import TrainingSettings

__all__ = ["limit_resources"]


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def limit_resources(settings: TrainingSettings, worker_class: WorkerClass) -> None:
    """The small class may allocate ``small_memory_limit_mb`` beyond what the process holds now."""
    headroom_mb = settings.small_memory_limit_mb
    if worker_class is WorkerClass.SMALL and headroom_mb:
        limit = _address_space_bytes() + headroom_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
