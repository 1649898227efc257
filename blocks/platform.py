"""Prefect blocks users register to point workers at a tenantml platform.

A block only holds configuration and builds what a process needs from it: no business logic.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from prefect.blocks.core import Block

from tenantml.settings import DatabaseSettings, MlflowSettings, Settings

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
        """The TENANTML_* variables a worker process needs; put them in a work pool's job variables.

        Only this block's fields: ``model_construct`` builds the settings from them alone, not from
        the environment of the process that asks.
        """
        settings = Settings.model_construct(
            home=Path(self.home),
            database=DatabaseSettings(url=self.database_url),
            mlflow=MlflowSettings(tracking_uri=self.mlflow_tracking_uri),
        )
        return settings.to_env(exclude_unset=True)
