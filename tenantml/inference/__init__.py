"""The inference core: tenant keys, the request gate, champions, the model cache, batching and schemas."""

__all__ = [
    "batching",
    "bento_names",
    "cache",
    "champion",
    "gate",
    "keys",
    "mlflow_source",
    "predictor",
    "schema",
    "statuses",
]
