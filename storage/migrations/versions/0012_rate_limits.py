"""shared send limits

The table behind storage/rates.py's SqlLimits: Telegram's limits (the bot's rate, one message a second per
chat, a group's 20 a minute) shared by every replica and dispatcher on PostgreSQL when no Redis is
configured. One row per key; `at` is seconds since the epoch by the database's clock.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limits',
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.Column('at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limits'))
    )


def downgrade() -> None:
    op.drop_table('rate_limits')
