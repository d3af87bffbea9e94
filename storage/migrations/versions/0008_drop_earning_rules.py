"""drop earning_rules

The earning rules live in the programme file (loyalty/programme.py) and are read from there by the one
earning function (loyalty/award.py). The table that mirrored them was written on every sync and read by
nothing, so it goes; the downgrade brings it back empty (the next sync would not fill it).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table('earning_rules')


def downgrade() -> None:
    op.create_table('earning_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('value', sa.Numeric(precision=10, scale=4), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_earning_rules')),
    sa.UniqueConstraint('code', name=op.f('uq_earning_rules_code'))
    )
