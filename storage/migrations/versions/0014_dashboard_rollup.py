"""dashboard: daily_stats rollup and indexes by the moment rows happened

The console's dashboard buckets members, ledger, purchases, coupons, outbox, survey answers, handoffs and
tier changes by local day; each source gets an index on its moment so one day (today, live) is an index
range, and completed days are kept in daily_stats (zone, day, metric, dimension) -> value, with the members
behind each day's distinct counts in daily_members (packed ids) for distinct counts over any range.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_members_joined_at", "members", ["joined_at"]),
    ("ix_members_status_tier_balance", "members", ["status", "tier", "balance"]),
    ("ix_ledger_entries_created_at_member", "ledger_entries", ["created_at", "member_id"]),
    ("ix_purchases_occurred_at_member", "purchases", ["occurred_at", "member_id"]),
    ("ix_coupons_issued_at", "coupons", ["issued_at"]),
    ("ix_coupons_used_at", "coupons", ["used_at"]),
    ("ix_outbox_created_at", "outbox", ["created_at"]),
    ("ix_survey_answers_created_at", "survey_answers", ["created_at"]),
    ("ix_handoff_conversations_closed_at", "handoff_conversations", ["closed_at"]),
    ("ix_tier_changes_created_at", "tier_changes", ["created_at"]),
]


def upgrade() -> None:
    op.create_table('daily_stats',
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('dimension', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('zone', 'day', 'metric', 'dimension', name=op.f('pk_daily_stats'))
    )
    op.create_table('daily_members',
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('members', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('zone', 'day', 'metric', name=op.f('pk_daily_members'))
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table('daily_members')
    op.drop_table('daily_stats')
