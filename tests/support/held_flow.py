"""A flow run that holds its worker until the test releases it: a busy worker the drain must not stop."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

HOLD_DEADLINE_S = 300.0


@flow(name="held-run")
def held(release: str) -> str:
    """Wait until the file ``release`` exists (polling, with a deadline so that no run outlives its test)."""
    end = time.monotonic() + HOLD_DEADLINE_S
    while not Path(release).exists():
        if time.monotonic() > end:
            raise TimeoutError(f"nobody released {release} within {HOLD_DEADLINE_S:.0f} s")
        time.sleep(0.1)
    return "released"
