"""Thin adapters from the domain to the database, MLflow, Prefect and storage."""
