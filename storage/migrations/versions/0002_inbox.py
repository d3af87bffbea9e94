"""durable inbox of Telegram updates

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox_updates',
    sa.Column('bot_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('lane', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('bot_id', 'update_id', name=op.f('pk_inbox_updates'))
    )
    op.create_index('ix_inbox_updates_lane', 'inbox_updates', ['bot_id', 'lane', 'status', 'update_id'])
    op.create_index('ix_inbox_updates_due', 'inbox_updates', ['status', 'update_id'])
    op.create_table('update_effects',
    sa.Column('key', sa.String(length=96), autoincrement=False, nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_update_effects'))
    )
    op.create_index(op.f('ix_update_effects_created_at'), 'update_effects', ['created_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_update_effects_created_at'), table_name='update_effects')
    op.drop_table('update_effects')
    op.drop_index('ix_inbox_updates_due', table_name='inbox_updates')
    op.drop_index('ix_inbox_updates_lane', table_name='inbox_updates')
    op.drop_table('inbox_updates')
