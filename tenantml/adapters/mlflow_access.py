"""Who may do what in MLflow: the platform's identities and their roles, through the auth REST API.

MLflow runs with ``--app-name basic-auth`` and ``default_permission = NO_PERMISSIONS``: a user sees
nothing it is not granted, and an anonymous request gets 401. Two identities, each a role:

- the **platform** (``tenantml-platform``) writes every tenant's runs, checkpoints and models:
  MANAGE on every experiment and registered model. It is not the admin, so a worker that leaks it
  cannot make users or change grants.
- the **inference service** (``tenantml-inference``) reads: READ on every experiment (a model's
  files are artifacts of its tenant's experiment) and every registered model.

Both grants are wildcards (``*``), held by a role, so models registered later are covered the moment
they exist: nothing has to grant READ at registration, and no registration can forget to. The
admin is used here only, by ``tenantml up``, once per start; every call is idempotent. With
workspaces off MLflow lets any authenticated user *create* an experiment or registered model (its
creator then manages it): see the README's security section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tenantml.errors import PlatformError, ServiceUnavailable

__all__ = ["Grant", "PLATFORM_GRANTS", "READER_GRANTS", "ensure_identity"]

WORKSPACE = "default"  # where roles live while workspaces are off
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Grant:
    resource_type: str
    permission: str
    pattern: str = "*"


PLATFORM_GRANTS = (Grant("experiment", "MANAGE"), Grant("registered_model", "MANAGE"))
READER_GRANTS = (Grant("experiment", "READ"), Grant("registered_model", "READ"))


class _Admin:
    def __init__(self, tracking_uri: str, username: str, password: str) -> None:
        self.uri = tracking_uri.rstrip("/")
        self.client = httpx.Client(base_url=self.uri, auth=(username, password), timeout=TIMEOUT_S)
        self.username = username

    def call(self, method: str, path: str, ok: Sequence[int] = (200,), **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ServiceUnavailable(f"MLflow at {self.uri} did not answer {method} {path}: {err}") from err
        if response.status_code == 401:
            raise PlatformError(
                f"MLflow at {self.uri} refused its admin {self.username!r}: the auth database was made with other "
                "credentials than the home's credentials.env; restore that file, or remove both it and "
                "mlflow/auth.db to start over with new identities"
            )
        if response.status_code not in ok:
            raise PlatformError(f"MLflow at {self.uri} answered {response.status_code} to {method} {path}: "
                                f"{response.text[:300]}")
        return response


def ensure_identity(tracking_uri: str, admin: tuple[str, str], user: tuple[str, str], role: str,
                    grants: Sequence[Grant]) -> None:
    """``user`` exists with this password and holds ``role``, which grants exactly ``grants`` (at least)."""
    api = _Admin(tracking_uri, *admin)
    try:
        username, password = user
        created = api.call("POST", "/api/2.0/mlflow/users/create", ok=(200, 400),
                           json={"username": username, "password": password})
        if created.status_code == 400:  # it exists: make its password the file's again
            api.call("PATCH", "/api/2.0/mlflow/users/update-password",
                     json={"username": username, "password": password})
        roles = api.call("GET", "/api/3.0/mlflow/roles/list", params={"workspace": WORKSPACE}).json().get("roles", [])
        found = next((r for r in roles if r["name"] == role), None)
        if found is None:
            found = api.call("POST", "/api/3.0/mlflow/roles/create",
                             json={"workspace": WORKSPACE, "name": role}).json()["role"]
        role_id = found["id"]
        held = api.call("GET", "/api/3.0/mlflow/roles/permissions/list",
                        params={"role_id": str(role_id)}).json().get("role_permissions", [])
        have = {(p["resource_type"], p["resource_pattern"], p["permission"]) for p in held}
        for grant in grants:
            if (grant.resource_type, grant.pattern, grant.permission) not in have:
                api.call("POST", "/api/3.0/mlflow/roles/permissions/add", json={
                    "role_id": role_id, "resource_type": grant.resource_type,
                    "resource_pattern": grant.pattern, "permission": grant.permission})
        assigned = api.call("GET", "/api/3.0/mlflow/users/roles/list", params={"username": username}).json()
        if not any(r["id"] == role_id for r in assigned.get("roles", [])):
            api.call("POST", "/api/3.0/mlflow/roles/assign", json={"username": username, "role_id": role_id})
    finally:
        api.client.close()
