"""The use cases, depending on :mod:`tenantml.ports` and the domain only."""

__all__ = [
    "admission",
    "finalize",
    "history",
    "models",
    "provisioner",
    "supervisor",
    "tenancy",
    "trainings",
    "worker",
]
