"""Thin adapters from the ports to the database, MLflow, Prefect and storage; third-party errors are translated here."""

__all__ = [
    "database",
    "ecs_fleet",
    "orchestration",
    "registry",
    "rows",
    "storage",
    "store",
    "tracking",
    "worker_limits",
]
