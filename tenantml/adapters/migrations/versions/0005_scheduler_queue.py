"""The scheduler's queue lives in the training metadata (issue #8).

Revision ID: 0005
Revises: 0004

- ``training_requests.queued_at``: since when a request waits for a worker slot; the new status
  ``waiting`` is a request whose attempt ended and that waits to resume. ``waiting`` is active, so
  the partial index that allows one active training per tenant and model is made again with it.
- ``preempt_requested`` and ``preempt_reason``: the scheduler asks the current attempt to
  checkpoint and hand back; the worker reads it with its heartbeat.
- ``tenants.max_running``: the tenant's own running limit (None: the settings' default).
- ``supervisor_leases``: which supervisor loop runs now; another takes over when it stops. It
  replaces the per-request master claim, so ``master_flow_run_id`` and ``master_heartbeat_at`` go.

A request that was pending before the upgrade waits since it was created; one that was running
keeps running and is watched by the supervisor from now on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OLD_ACTIVE = ["pending", "resuming", "running"]
_NEW_ACTIVE = ["pending", "resuming", "running", "waiting"]


def _index(statuses: list[str]) -> None:
    status: sa.ColumnClause[str] = sa.column("status")
    op.create_index(
        "one_active_training", "training_requests", ["tenant", "model"], unique=True,
        sqlite_where=status.in_(statuses), postgresql_where=status.in_(statuses),
    )


def upgrade() -> None:
    op.drop_index("one_active_training", table_name="training_requests")  # before the batch copies the table
    with op.batch_alter_table("training_requests") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("preempt_requested", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("preempt_reason", sa.Text))
        batch.drop_column("master_flow_run_id")
        batch.drop_column("master_heartbeat_at")
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("max_running", sa.Integer))
    op.create_table(
        "supervisor_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    requests = sa.table("training_requests", sa.column("status"), sa.column("queued_at"), sa.column("created_at"))
    op.execute(requests.update().where(requests.c.status == "pending").values(queued_at=requests.c.created_at))
    _index(_NEW_ACTIVE)


def downgrade() -> None:
    requests = sa.table("training_requests", sa.column("status"))
    op.execute(requests.update().where(requests.c.status == "waiting").values(status="resuming"))
    op.drop_index("one_active_training", table_name="training_requests")
    op.drop_table("supervisor_leases")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("max_running")
    with op.batch_alter_table("training_requests") as batch:
        batch.add_column(sa.Column("master_flow_run_id", sa.String(36)))
        batch.add_column(sa.Column("master_heartbeat_at", sa.DateTime(timezone=True)))
        batch.drop_column("preempt_reason")
        batch.drop_column("preempt_requested")
        batch.drop_column("queued_at")
    _index(_OLD_ACTIVE)
