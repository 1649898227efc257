"""The local platform's credentials: one ``KEY=value`` file in the home, mode 0600, made once.

``tenantml up`` generates it on a first start and reuses it on every later one (the Prefect server's
auth string and the MLflow auth database must keep matching it). It holds, in the clients' own
variables, what an operator needs to call ``prefect`` or ``mlflow`` directly::

    set -a; . "$TENANTML_HOME/credentials.env"; set +a

- ``PREFECT_API_AUTH_STRING``: the Prefect server's basic-auth string (the server gets it as
  ``PREFECT_SERVER_API_AUTH_STRING``; the UI asks for it once).
- ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``: the platform's MLflow service identity,
  which writes every tenant's runs and models (MANAGE on all experiments and registered models).
- ``MLFLOW_AUTH_ADMIN_USERNAME``/``MLFLOW_AUTH_ADMIN_PASSWORD``: MLflow's admin, under the names
  ``mlflow server`` reads; only ``tenantml up`` uses it, to create the identities and their roles.
- ``INFERENCE_MLFLOW_TRACKING_USERNAME``/``..._PASSWORD``: the inference service's read-only identity.
- ``MLFLOW_FLASK_SERVER_SECRET_KEY``: signs the MLflow auth UI's CSRF tokens.

Secrets travel in environments only, never in command lines, logs, ``platform.json`` or status.
Values are URL-safe base64, so the file needs no quoting.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from tenantml.errors import PlatformError

__all__ = [
    "CLIENT_VARIABLES",
    "CREDENTIAL_VARIABLES",
    "Credentials",
    "Identity",
    "credentials_file",
    "ensure_credentials",
    "read_credentials",
    "without_credentials",
]

FILE_NAME = "credentials.env"
PLATFORM_USER = "tenantml-platform"
INFERENCE_USER = "tenantml-inference"
ADMIN_USER = "tenantml-admin"

CLIENT_VARIABLES = ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""What a platform client reads: Prefect's and MLflow's own variables."""

CREDENTIAL_VARIABLES = (
    *CLIENT_VARIABLES,
    "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD",
    "INFERENCE_MLFLOW_TRACKING_USERNAME", "INFERENCE_MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
"""Every variable of the file; a child process inherits none of them from the operator's shell."""


@dataclass(frozen=True)
class Identity:
    """An MLflow user: what ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` carry."""

    username: str
    password: SecretStr

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password.get_secret_value()}


@dataclass(frozen=True)
class Credentials:
    path: Path
    prefect_auth_string: SecretStr
    platform: Identity
    inference: Identity
    admin: Identity
    mlflow_secret_key: SecretStr

    def client_env(self) -> dict[str, str]:
        """The platform's own clients (workers, fork server, CLI, supervisor): Prefect and MLflow service identity."""
        return {"PREFECT_API_AUTH_STRING": self.prefect_auth_string.get_secret_value(), **self.platform.env()}

    def inference_env(self) -> dict[str, str]:
        """The inference service: the read-only MLflow identity, and no Prefect credential (it never calls Prefect)."""
        return self.inference.env()

    def export(self, environ: MutableMapping[str, str] = os.environ, override: bool = True) -> None:
        """Make this process a platform client: the client variables into ``environ``.

        MLflow's clients read ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` from the environment at each
        request (there is no per-client credential), and Prefect's from its settings, which it built
        from the environment at import: those are rebuilt here, so threads already running (the
        supervisor, the provisioner) send the auth string too. Without ``override`` a value the
        caller set already wins.
        """
        for name, value in self.client_env().items():
            if override or name not in environ:
                environ[name] = value
        if environ is os.environ and "prefect.context" in sys.modules:
            from prefect.context import refresh_global_settings_context

            refresh_global_settings_context()

    def to_file_text(self) -> str:
        values = {
            "PREFECT_API_AUTH_STRING": self.prefect_auth_string.get_secret_value(),
            **self.platform.env(),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.admin.username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin.password.get_secret_value(),
            "INFERENCE_MLFLOW_TRACKING_USERNAME": self.inference.username,
            "INFERENCE_MLFLOW_TRACKING_PASSWORD": self.inference.password.get_secret_value(),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.mlflow_secret_key.get_secret_value(),
        }
        header = (
            "# tenantml operator credentials, made by `tenantml up`: keep this file 0600.\n"
            f"# Before calling prefect or mlflow directly: set -a; . {self.path}; set +a\n"
        )
        return header + "".join(f"{name}={value}\n" for name, value in values.items())


def credentials_file(home: Path) -> Path:
    return home.resolve() / FILE_NAME


def _parse(path: Path, text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise PlatformError(f"line {number} of {path} is not KEY=value: fix it, or remove the file and the "
                                "home's auth databases to make new credentials")
        values[name.strip().removeprefix("export ").strip()] = value.strip()
    return values


def read_credentials(home: Path) -> Credentials | None:
    """The home's credentials, or None if ``tenantml up`` never ran there."""
    path = credentials_file(home)
    try:
        values = _parse(path, path.read_text())
    except FileNotFoundError:
        return None
    missing = [name for name in CREDENTIAL_VARIABLES if not values.get(name)]
    if missing:
        raise PlatformError(f"{path} lacks {', '.join(missing)}: restore it from a backup, or remove it together "
                            "with the home's auth databases (mlflow/auth.db) so that `tenantml up` makes new ones")

    def identity(prefix: str) -> Identity:
        return Identity(values[f"{prefix}_USERNAME"], SecretStr(values[f"{prefix}_PASSWORD"]))

    return Credentials(
        path=path,
        prefect_auth_string=SecretStr(values["PREFECT_API_AUTH_STRING"]),
        platform=identity("MLFLOW_TRACKING"),
        inference=identity("INFERENCE_MLFLOW_TRACKING"),
        admin=identity("MLFLOW_AUTH_ADMIN"),
        mlflow_secret_key=SecretStr(values["MLFLOW_FLASK_SERVER_SECRET_KEY"]),
    )


def _secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


def ensure_credentials(home: Path) -> Credentials:
    """The home's credentials, made (0600, exclusively) on the first start and reused after."""
    found = read_credentials(home)
    if found is not None:
        return found
    path = credentials_file(home)
    made = Credentials(path, _secret(), Identity(PLATFORM_USER, _secret()), Identity(INFERENCE_USER, _secret()),
                       Identity(ADMIN_USER, _secret()), _secret())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `tenantml up` on this home made it first: use its
        return ensure_credentials(home)
    with os.fdopen(fd, "w") as out:
        out.write(made.to_file_text())
    return made


def without_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` minus every credential variable: a child gets exactly the ones meant for it."""
    return {name: value for name, value in environ.items() if name not in CREDENTIAL_VARIABLES}
