"""schedules: archived_at

A schedule deleted in the console after it planned messages is archived, not removed: its outbox rows
stay its history.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('schedules') as batch_op:
        batch_op.add_column(sa.Column('archived_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('schedules') as batch_op:
        batch_op.drop_column('archived_at')
