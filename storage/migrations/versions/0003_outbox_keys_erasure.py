"""outbox idempotency keys and erasure

Every outbox row gets an `idempotency_key` (NOT NULL, unique). Existing scheduled rows get
``schedule:<schedule_id>:<member_id>:<period>``; existing rows without a schedule (which the old
(schedule, member, period) key could not protect, NULLs being distinct) get ``legacy:<id>``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
    op.execute(sa.text(
        "UPDATE outbox SET idempotency_key = CASE WHEN schedule_id IS NULL "
        "THEN 'legacy:' || CAST(id AS VARCHAR) "
        "ELSE 'schedule:' || CAST(schedule_id AS VARCHAR) || ':' || CAST(member_id AS VARCHAR) || ':' || period END"
    ))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=255), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_outbox_idempotency_key'), ['idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_outbox_idempotency_key'), type_='unique')
        batch_op.drop_column('idempotency_key')
