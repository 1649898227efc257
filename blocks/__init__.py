"""Prefect blocks users register."""

__all__ = [
    "platform",
]
