"""The credentials file: made once, private, reused, and every variable a client reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantml.errors import PlatformError
from tenantml.local.credentials import (
    CREDENTIAL_VARIABLES,
    credentials_file,
    ensure_credentials,
    read_credentials,
    without_credentials,
)


def test_credentials_are_made_once_private_and_reused(tmp_path: Path) -> None:
    assert read_credentials(tmp_path) is None
    made = ensure_credentials(tmp_path)
    assert credentials_file(tmp_path).stat().st_mode & 0o777 == 0o600
    again = ensure_credentials(tmp_path)
    assert again.prefect_auth_string.get_secret_value() == made.prefect_auth_string.get_secret_value()
    assert again.platform.password.get_secret_value() == made.platform.password.get_secret_value()
    assert made.platform.username != made.inference.username != made.admin.username


def test_the_file_is_plain_key_value_in_the_clients_own_variables(tmp_path: Path) -> None:
    made = ensure_credentials(tmp_path)
    lines = [line for line in credentials_file(tmp_path).read_text().splitlines() if not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert set(values) == set(CREDENTIAL_VARIABLES)
    assert values["PREFECT_API_AUTH_STRING"] == made.prefect_auth_string.get_secret_value()
    assert values["MLFLOW_TRACKING_USERNAME"] == made.platform.username
    assert all(value.replace("-", "").replace("_", "").isalnum() for value in values.values())  # no quoting needed


def test_a_child_inherits_no_credential_from_the_operators_shell() -> None:
    shell = {"PATH": "/bin", "MLFLOW_TRACKING_PASSWORD": "x", "MLFLOW_AUTH_ADMIN_PASSWORD": "y"}
    assert without_credentials(shell) == {"PATH": "/bin"}


def test_export_without_override_keeps_what_the_caller_set(tmp_path: Path) -> None:
    made = ensure_credentials(tmp_path)
    environ = {"MLFLOW_TRACKING_USERNAME": "someone"}
    made.export(environ, override=False)
    assert environ["MLFLOW_TRACKING_USERNAME"] == "someone"
    assert environ["PREFECT_API_AUTH_STRING"] == made.prefect_auth_string.get_secret_value()
    assert made.inference_env()["MLFLOW_TRACKING_USERNAME"] == made.inference.username
    assert "PREFECT_API_AUTH_STRING" not in made.inference_env()


def test_a_file_missing_a_variable_is_refused_with_what_to_do(tmp_path: Path) -> None:
    credentials_file(tmp_path).write_text("PREFECT_API_AUTH_STRING=abc\n")
    with pytest.raises(PlatformError, match="lacks MLFLOW_TRACKING_USERNAME"):
        read_credentials(tmp_path)
