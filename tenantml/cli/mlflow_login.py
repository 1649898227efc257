"""What the CLI needs of MLflow's admin: a client on the platform's MLflow, and the login text a
tenant gets (its password shown once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantml.cli.session import Session

if TYPE_CHECKING:  # without importing the admin client at start
    from tenantml.adapters.mlflow_tenants import TenantAccess

__all__ = ["mlflow_login_text", "tenant_access"]


def tenant_access(current: Session) -> TenantAccess | None:
    """MLflow's admin client on the platform's MLflow, or None where MLflow runs without auth."""
    from tenantml.adapters.mlflow_tenants import TenantAccess
    from tenantml.local.credentials import read_credentials

    credentials = read_credentials(current.settings.home)
    if credentials is None:
        return None
    admin = credentials.admin
    return TenantAccess(current.connection.tracking_uri, (admin.username, admin.password.get_secret_value()))


def mlflow_login_text(url: str, tenant: str, password: str) -> str:
    from tenantml.adapters.mlflow_tenants import mlflow_username

    return (f"MLflow UI for tenant {tenant}: {url} (read-only: its runs, checkpoints and models)\n"
            f"  username: {mlflow_username(tenant)}\n  password (shown once): {password}\n"
            f"  or from a client: MLFLOW_TRACKING_USERNAME={mlflow_username(tenant)} MLFLOW_TRACKING_PASSWORD=<password>")
