"""Idempotency keys are stored under their tenant (``<tenant>:<key>``), so tenants' keys never meet.

Revision ID: 0004
Revises: 0003

Before, keys were global: another tenant's key answered "already in use", which told a tenant that
someone else had used it. The column keeps its unique index; only its values change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_requests = sa.table("training_requests", sa.column("tenant"), sa.column("idempotency_key"))


def upgrade() -> None:
    op.execute(
        _requests.update()
        .where(_requests.c.idempotency_key.is_not(None))
        .values(idempotency_key=_requests.c.tenant + ":" + _requests.c.idempotency_key)
    )


def downgrade() -> None:
    prefix_length = sa.func.length(_requests.c.tenant) + 2
    op.execute(
        _requests.update()
        .where(_requests.c.idempotency_key.is_not(None))
        .values(idempotency_key=sa.func.substr(_requests.c.idempotency_key, prefix_length))
    )
