"""Requests admitted before the validation split (issue #12) trained on every row: their params say
so (``validation_fraction`` 0), so that one resumed after the upgrade keeps training on the same rows
and takes back its checkpoint, instead of holding out a fifth of them midway.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_requests = sa.table("training_requests", sa.column("id", sa.String), sa.column("params", sa.JSON))


def upgrade() -> None:
    bind = op.get_bind()
    for request_id, params in bind.execute(sa.select(_requests.c.id, _requests.c.params)).all():
        if isinstance(params, dict) and "validation_fraction" not in params:
            bind.execute(_requests.update().where(_requests.c.id == request_id)
                         .values(params={**params, "validation_fraction": 0.0}))


def downgrade() -> None:
    """Leave the params as they are: 0 is what those trainings did, and older code ignores the key."""
