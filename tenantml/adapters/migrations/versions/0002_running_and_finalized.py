"""When an attempt's training code began, and when a master finalized a request.

Revision ID: 0002
Revises: 0001

Requests that had already ended count as finalized when they ended: without that, the reconciler
would start a master for every old request just to promote and clean up what was done long ago.

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TERMINAL = ("cancelled", "completed", "failed", "skipped")


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("running_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("training_requests") as batch:
        batch.add_column(sa.Column("finalized_at", sa.DateTime(timezone=True)))
    requests = sa.table("training_requests", sa.column("status"), sa.column("finished_at"),
                        sa.column("updated_at"), sa.column("finalized_at"))
    op.execute(
        requests.update()
        .where(requests.c.status.in_(_TERMINAL))
        .values(finalized_at=sa.func.coalesce(requests.c.finished_at, requests.c.updated_at))
    )


def downgrade() -> None:
    with op.batch_alter_table("training_requests") as batch:
        batch.drop_column("finalized_at")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("running_at")
