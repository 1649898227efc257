"""The provisioner's last decision per worker class (issue #8, item 5).

Revision ID: 0006
Revises: 0005

``fleet_decisions`` holds one row per worker class, overwritten every tick: the counts the decision
saw and chose, its bounds, the workers draining and replaced, and the reason, for ``tenantml
workers``. A history of decisions is in Prefect's event feed (``tenantml.fleet.scaled``), not here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_decisions",
        sa.Column("worker_class", sa.String(16), primary_key=True),
        sa.Column("current", sa.Integer, nullable=False),
        sa.Column("desired", sa.Integer, nullable=False),
        sa.Column("minimum", sa.Integer, nullable=False),
        sa.Column("maximum", sa.Integer, nullable=False),
        sa.Column("busy", sa.Integer, nullable=False),
        sa.Column("need", sa.Integer, nullable=False),
        sa.Column("draining", sa.Integer, nullable=False),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("fleet_decisions")
