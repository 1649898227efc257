"""The Prefect flows: training master, training worker, maintenance."""

__all__ = [
    "maintenance",
    "training_master",
    "training_worker",
]
