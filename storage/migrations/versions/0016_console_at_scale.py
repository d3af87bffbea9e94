"""the console on a million members: names in order, support conversations newest first, raw day sets

A search for a common first name matched tens of thousands of members, and the trigram index alone hands
them over unordered: every match was fetched and sorted for a page of twenty (3 s on a million members).
On PostgreSQL a b-tree on the lower-cased full name in code-point order (COLLATE "C") serves the names that
start with the text a page at a time; the trigram index still serves the names that contain it. The
support list (newest first) gets an index on when a conversation opened. The dashboard's day sets of
members are kept uncompressed from now on (inflating a year of them was most of a year's page): the sets
kept so far are dropped with their days' marks, and the next page computes them again.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

NAME_TEXT = "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))"


def upgrade() -> None:
    op.execute("DELETE FROM daily_members")
    op.execute("DELETE FROM daily_stats WHERE metric = '_done_day'")
    op.create_index('ix_handoff_conversations_opened', 'handoff_conversations', ['opened_at', 'id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE INDEX ix_members_name_order ON members (({NAME_TEXT} COLLATE "C"), id)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_members_name_order")
    op.drop_index('ix_handoff_conversations_opened', table_name='handoff_conversations')
