"""The first schema of the training metadata: tenants, training requests and their attempts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ACTIVE = ("pending", "resuming", "running")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("api_key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "training_requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("training_fingerprint", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("algorithm", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("promotion", sa.String(128), nullable=False),
        sa.Column("force", sa.Boolean, nullable=False),
        sa.Column("idempotency_key", sa.String(256), unique=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("worker_uuid", sa.String(36)),
        sa.Column("worker_class", sa.String(16), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer),
        sa.Column("checkpoint_uri", sa.Text),
        sa.Column("checkpoint_step", sa.Integer),
        sa.Column("checkpoint_sha256", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("master_flow_run_id", sa.String(36)),
        sa.Column("master_heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("move_requested", sa.Boolean, nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    active = sa.column("status").in_(_ACTIVE)
    op.create_index(
        "one_active_training", "training_requests", ["tenant", "model"], unique=True,
        sqlite_where=active, postgresql_where=active,
    )
    _create_attempts()


def _create_attempts() -> None:
    op.create_table(
        "attempts",
        sa.Column("request_id", sa.String(36), sa.ForeignKey("training_requests.id"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("worker_uuid", sa.String(36), nullable=False),
        sa.Column("worker_class", sa.String(16), nullable=False),
        sa.Column("flow_run_id", sa.String(36)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("end", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("resume_step", sa.Integer, nullable=False),
        sa.Column("end_step", sa.Integer),
        sa.UniqueConstraint("request_id", "epoch"),
    )


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_index("one_active_training", table_name="training_requests")
    op.drop_table("training_requests")
    op.drop_table("tenants")
