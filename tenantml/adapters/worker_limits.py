"""What a worker class may use, enforced on the worker's own process (claim 7's "more resources").

The small class gets an address-space limit (``RLIMIT_AS``) of ``small_memory_limit_mb`` beyond
what the process holds when training starts, so that a training too big for it fails with a
``MemoryError`` the worker can classify as a resource failure, and the next attempt escalates to
the large class (:func:`tenantml.domain.failover.next_worker_class`). The large class has no limit
of ours; in the cloud its size is the work pool's (the ECS task's memory, a pod's limits).
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

from tenantml.domain.request import WorkerClass
from tenantml.settings import TrainingSettings

__all__ = ["limit_resources"]


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _start_reader_threads() -> None:
    """Read a one-row Parquet file the way datasets are read, so Arrow's I/O thread exists already.

    A thread created under the limit may fail to get its stack, and Arrow aborts the process then
    (std::system_error, SIGABRT): a crash the master cannot tell from any other, where a MemoryError
    would have escalated the attempt to the large class.
    """
    import pandas as pd

    from tenantml.ml.dataset import read_table

    with tempfile.TemporaryDirectory(prefix="tenantml-limits-") as folder:
        probe = Path(folder) / "probe.parquet"
        pd.DataFrame({"x": [0.0]}).to_parquet(probe)
        read_table(probe)


def limit_resources(settings: TrainingSettings, worker_class: WorkerClass) -> None:
    """The small class may allocate ``small_memory_limit_mb`` beyond what the process holds now.

    Call it once the threads the attempt needs have started (Arrow's reader thread is started
    here; the heartbeat thread starts right after, while the headroom is still untouched).
    """
    headroom_mb = settings.small_memory_limit_mb
    if worker_class is WorkerClass.SMALL and headroom_mb:
        _start_reader_threads()
        limit = _address_space_bytes() + headroom_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
