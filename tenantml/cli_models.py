"""`tenantml model ...` and `tenantml predict`: registered models and inference (see serving/)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the model and predict commands to the `tenantml` parser."""
