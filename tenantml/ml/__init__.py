"""Resumable algorithms, their parameters, the validation split and metrics, and reading a tenant's dataset."""

__all__ = [
    "algorithms",
    "dataset",
    "limits",
    "metrics",
    "model_files",
    "params",
    "split",
    "trainer",
]
