"""The peer of the recovery benchmark: a training flow with only Prefect's own recovery.

It does what a loop with no checkpoints does; Prefect's zombie automation (heartbeats at the 30 s
minimum) marks a silent run Crashed, and a second automation resubmits the deployment.
"""

from __future__ import annotations

import time

from prefect import flow


@flow(name="peer-training")
def peer_training(seconds: float = 3600.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
