"""the console's members pages: the feedback inbox's state and reply, a name index for member search

Feedback gets a state (new | answered | closed), the operator's reply and who answered or closed it and
when. Operators search members by name (a part of it, case-insensitive): on PostgreSQL a trigram index
(pg_trgm, a trusted extension since PostgreSQL 13) on the lower-cased full name serves LIKE '%text%'
without reading every row; SQLite, the embedded store for small programmes, reads the table.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

NAME_INDEX = "ix_members_name_trgm"
NAME_TEXT = "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))"


def upgrade() -> None:
    with op.batch_alter_table('feedback') as batch:
        batch.add_column(sa.Column('state', sa.String(length=16), nullable=False, server_default='new'))
        batch.add_column(sa.Column('reply', sa.Text(), nullable=True))
        batch.add_column(sa.Column('answered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_index('ix_feedback_state', 'feedback', ['state'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(f"CREATE INDEX {NAME_INDEX} ON members USING gin (({NAME_TEXT}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"DROP INDEX IF EXISTS {NAME_INDEX}")
    op.drop_index('ix_feedback_state', table_name='feedback')
    with op.batch_alter_table('feedback') as batch:
        for column in ('closed_at', 'answered_by', 'answered_at', 'reply', 'state'):
            batch.drop_column(column)
