"""The BentoML inference service and the import of registered models into BentoML."""

__all__ = [
    "import_model",
    "service",
]
