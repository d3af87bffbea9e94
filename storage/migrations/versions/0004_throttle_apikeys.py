"""throttling counters and API key use

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('throttle_counters',
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_throttle_counters'))
    )
    op.create_index(op.f('ix_throttle_counters_expires_at'), 'throttle_counters', ['expires_at'], unique=False)
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.add_column(sa.Column('last_used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.drop_column('last_used_at')
    op.drop_index(op.f('ix_throttle_counters_expires_at'), table_name='throttle_counters')
    op.drop_table('throttle_counters')
