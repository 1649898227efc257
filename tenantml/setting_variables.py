"""How settings are spelled as environment variables: the ``TENANTML_`` prefix, ``__`` between a
section and its field, and the conversion of a settings dump into variables a child process reads."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

__all__ = ["ENV_PREFIX", "NESTED_DELIMITER", "NOT_SETTINGS", "as_variables", "variable_name"]

ENV_PREFIX = "TENANTML_"
NESTED_DELIMITER = "__"
# Variables with the prefix that are not settings: the local platform's project folder (see
# tenantml.local.project), which prefect.yaml's pull step reads too, so every flow run has it.
# A limited worker class's flow runs also get their memory cgroup's folder and limit (tenantml.local.cgroups).
NOT_SETTINGS = frozenset({"TENANTML_PROJECT_DIR", "TENANTML_RUN_CGROUP", "TENANTML_RUN_MEMORY_MB"})


def variable_name(path: Iterable[str]) -> str:
    """``("training", "heartbeat_timeout_s")`` -> ``TENANTML_TRAINING__HEARTBEAT_TIMEOUT_S``."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in path)


def as_variables(values: dict[str, object], prefix: str = ENV_PREFIX) -> dict[str, str]:
    """A settings dump (nested dicts) as variables; secrets as their values, booleans as true/false."""
    env: dict[str, str] = {}
    for name, value in values.items():
        variable = prefix + name.upper()
        if isinstance(value, dict):
            env.update(as_variables(value, variable + NESTED_DELIMITER))
        elif isinstance(value, SecretStr):
            env[variable] = value.get_secret_value()
        elif isinstance(value, bool):
            env[variable] = "true" if value else "false"
        else:
            env[variable] = str(value)
    return env
