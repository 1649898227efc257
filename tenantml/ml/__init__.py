"""Resumable algorithms, their parameters, and reading a tenant's dataset."""

__all__ = [
    "algorithms",
    "dataset",
    "params",
]
