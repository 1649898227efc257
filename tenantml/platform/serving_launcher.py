"""Starting the inference service as part of the embedded platform (filled in with serving/)."""

from __future__ import annotations

from typing import Any

__all__ = ["start"]


def start(platform: Any, env: dict[str, str], port: int) -> str | None:
    return None
