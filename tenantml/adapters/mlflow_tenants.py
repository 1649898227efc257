"""Each tenant's own MLflow user, through the auth REST API as MLflow's admin.

Why per-resource grants and not MLflow workspaces (``--enable-workspaces``, 3.10+): with workspaces
every client (workers, finalization, inference, the tenant API) must name a workspace on every call,
and the platform's and inference's wildcard roles become one role per workspace; that is a change to
every MLflow caller, while grants change nothing but this module. A tenant user gets READ on its
experiment (``tenantml-<tenant>``: runs, metrics, checkpoints and model files are its artifacts) and
on each registered model ``<tenant>.*``; never EDIT: a tenant changes its models through the tenant
API (promote, roll back), where the platform checks what it asks, so the MLflow UI is a read-only view.

The gap of grants without workspaces: any logged-in user may *create* an experiment or registered
model, and becomes its manager. :meth:`TenantAccess.sync` bounds it: it creates each tenant's
experiment as soon as the tenant exists (before anybody else can), grants each tenant its
models, and revokes every grant a tenant user holds on anything not its own (an experiment or a
model it created under another tenant's name). ``tenantml up`` runs it at start and then every
``mlflow.access_sync_interval_s``; ``tenant create`` and ``tenant mlflow-sync`` run it at once. A
squatted name is therefore readable by its squatter for at most one interval plus the auth cache
TTL; closing it outright needs workspaces (a tenant without a workspace-wide grant cannot create).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from tenantml.adapters.mlflow_access import _Admin
from tenantml.adapters.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, experiment_name

__all__ = ["SyncReport", "TenantAccess", "mlflow_username"]

READ = "READ"


def mlflow_username(tenant: str) -> str:
    """``tenant-<name>``: tenant names have no dot or colon, and no tenant user is ``tenantml-*``."""
    return f"tenant-{tenant}"


@dataclass
class SyncReport:
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)


class TenantAccess:
    """The admin's view of tenant users: create, grant, revoke, change passwords, delete."""

    def __init__(self, tracking_uri: str, admin: tuple[str, str]) -> None:
        self._api = _Admin(tracking_uri, *admin)
        self.url = self._api.uri

    def close(self) -> None:
        self._api.client.close()

    def __enter__(self) -> TenantAccess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # users

    def set_password(self, tenant: str, password: str | None = None) -> str:
        """Create the tenant's user or give it a new password; returns the password (generated if None)."""
        password = password or secrets.token_urlsafe(24)
        username = mlflow_username(tenant)
        created = self._api.call("POST", "/api/2.0/mlflow/users/create", ok=(200, 400),
                                 json={"username": username, "password": password})
        if created.status_code == 400:
            self._api.call("PATCH", "/api/2.0/mlflow/users/update-password",
                           json={"username": username, "password": password})
        return password

    def user_exists(self, tenant: str) -> bool:
        found = self._api.call("GET", "/api/2.0/mlflow/users/get", ok=(200, 404),
                               params={"username": mlflow_username(tenant)})
        return found.status_code == 200

    def delete_user(self, tenant: str) -> bool:
        gone = self._api.call("DELETE", "/api/2.0/mlflow/users/delete", ok=(200, 404),
                              json={"username": mlflow_username(tenant)})
        return gone.status_code == 200

    # resources

    def experiment_id(self, tenant: str, create: bool = True) -> str | None:
        """The tenant's experiment, created (by the admin) if missing and ``create``."""
        name = experiment_name(tenant)
        found = self._api.call("GET", "/api/2.0/mlflow/experiments/get-by-name", ok=(200, 404),
                               params={"experiment_name": name})
        if found.status_code == 200:
            return str(found.json()["experiment"]["experiment_id"])
        if not create:
            return None
        made = self._api.call("POST", "/api/2.0/mlflow/experiments/create",
                              json={"name": name, "tags": [{"key": "tenant", "value": tenant},
                                                           {"key": EXPERIMENT_KIND_TAG, "value": EXPERIMENT_KIND}]})
        return str(made.json()["experiment_id"])

    def model_names(self, tenant: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            params = {"filter": f"name LIKE '{tenant}.%'", "max_results": "1000"}
            if token:
                params["page_token"] = token
            page = self._api.call("GET", "/api/2.0/mlflow/registered-models/search", params=params).json()
            names += [m["name"] for m in page.get("registered_models", [])
                      if str(m["name"]).startswith(f"{tenant}.")]
            token = page.get("next_page_token")
            if not token:
                return names

    def _grants(self, tenant: str) -> list[tuple[str, str, str]]:
        listed = self._api.call("GET", "/api/3.0/mlflow/users/permissions/list",
                                params={"username": mlflow_username(tenant)}).json()
        return [(p["resource_type"], p["resource_pattern"], p["permission"]) for p in listed.get("permissions", [])]

    def _grant(self, tenant: str, resource_type: str, resource_id: str, permission: str = READ) -> None:
        self._api.call("POST", "/api/3.0/mlflow/users/permissions/grant", json={
            "username": mlflow_username(tenant), "resource_type": resource_type, "resource_id": resource_id,
            "permission": permission})

    def _revoke(self, tenant: str, resource_type: str, resource_id: str) -> None:
        self._api.call("POST", "/api/3.0/mlflow/users/permissions/revoke", json={
            "username": mlflow_username(tenant), "resource_type": resource_type, "resource_id": resource_id})

    def sync(self, tenants: Iterable[str], create_users: bool = True) -> SyncReport:
        """Every tenant's grants exactly: READ on its experiment and models, nothing else.

        A tenant without a user gets one with a password nobody is shown (``tenant mlflow-login``
        hands one out). Idempotent: a second call grants and revokes nothing.
        """
        report = SyncReport()
        for tenant in tenants:
            if not self.user_exists(tenant):
                if not create_users:
                    continue
                self.set_password(tenant)
                report.users_created.append(tenant)
            experiment = self.experiment_id(tenant)
            assert experiment is not None
            own = {("experiment", experiment)} | {("registered_model", m) for m in self.model_names(tenant)}
            held = self._grants(tenant)
            for resource_type, pattern, permission in held:
                if (resource_type, pattern) not in own or permission != READ:
                    self._revoke(tenant, resource_type, pattern)
                    report.revoked.append(f"{tenant}: {permission} on {resource_type} {pattern}")
            have = {(t, p) for t, p, permission in held if permission == READ and (t, p) in own}
            for resource_type, pattern in sorted(own - have):
                self._grant(tenant, resource_type, pattern)
                report.granted.append(f"{tenant}: READ on {resource_type} {pattern}")
        return report

    def delete_tenant_side(self, tenant: str) -> dict[str, int]:
        """Remove the tenant's registered models, its experiment's files (runs' artifacts: checkpoints,
        model files), its runs and experiment, and its user; returns what was removed, by kind.

        The experiment is renamed before it is deleted: MLflow keeps a deleted experiment's name
        taken, and a tenant created later under this name must get a fresh one.
        """
        removed = {"registered_models": 0, "runs": 0, "experiments": 0, "mlflow_users": 0}
        for name in self.model_names(tenant):
            self._api.call("DELETE", "/api/2.0/mlflow/registered-models/delete", json={"name": name})
            removed["registered_models"] += 1
        experiment = self.experiment_id(tenant, create=False)
        if experiment is not None:
            removed["runs"] = len(self._run_ids(experiment))
            self._api.call("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}", ok=(200, 404))
            self._api.call("POST", "/api/2.0/mlflow/experiments/update", json={
                "experiment_id": experiment, "new_name": f"{experiment_name(tenant)}.deleted-{experiment}"})
            self._api.call("POST", "/api/2.0/mlflow/experiments/delete", json={"experiment_id": experiment})
            removed["experiments"] = 1
        removed["mlflow_users"] = int(self.delete_user(tenant))
        return removed

    def _run_ids(self, experiment: str) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        while True:
            body: dict[str, object] = {"experiment_ids": [experiment], "run_view_type": "ALL", "max_results": 1000}
            if token:
                body["page_token"] = token
            page = self._api.call("POST", "/api/2.0/mlflow/runs/search", json=body).json()
            ids += [run["info"]["run_id"] for run in page.get("runs", [])]
            token = page.get("next_page_token")
            if not token:
                return ids
