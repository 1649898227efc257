"""The embedded local platform behind ``tenantml up`` and ``make demo``; nothing outside it (but the CLI) imports it."""

__all__ = [
    "demo",
    "embedded",
    "fork_server",
    "launch",
    "processes",
    "project",
    "servers",
    "state",
    "status",
    "workers",
]
