"""The use cases, depending on :mod:`tenantml.ports` and the domain only."""

__all__ = [
    "admission",
    "finalize",
    "history",
    "master",
    "models",
    "provisioner",
    "reconcile",
    "tenancy",
    "trainings",
    "worker",
]
