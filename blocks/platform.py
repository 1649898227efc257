"""Prefect blocks users register to point workers at a tenantml platform.

A block only holds configuration and builds what a process needs from it: no business logic.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from prefect.blocks.core import Block

__all__ = ["TenantmlPlatform"]


class TenantmlPlatform(Block):
    """Where a tenantml worker finds the training metadata, MLflow and the tenants' datasets."""

    _block_type_name = "tenantml Platform"
    _block_type_slug = "tenantml-platform"
    _description = "Connection settings of a tenantml platform for training workers on other machines."

    database_url: SecretStr = Field(
        description="SQLAlchemy URL of the training metadata database, e.g. postgresql+psycopg://user@host/db"
    )
    mlflow_tracking_uri: str = Field(description="MLflow tracking server, e.g. http://mlflow.internal:5000")
    home: str = Field(default=".tenantml", description="TENANTML_HOME on the worker: datasets and local files")

    def settings_env(self) -> dict[str, str]:
        """The TENANTML_* variables a worker process needs; put them in a work pool's job variables."""
        return {
            "TENANTML_DATABASE__URL": self.database_url.get_secret_value(),
            "TENANTML_MLFLOW__TRACKING_URI": self.mlflow_tracking_uri,
            "TENANTML_HOME": self.home,
        }
