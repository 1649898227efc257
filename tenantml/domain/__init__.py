"""The domain: plain Python, no framework imports."""

__all__ = [
    "admission",
    "failover",
    "names",
    "promotion",
    "provisioning",
    "request",
    "scheduling",
    "tenant",
]
