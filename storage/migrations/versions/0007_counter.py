"""the counter: staff look-ups and purchase undo

Staff find a member by phone at the counter, so members.phone gets an index. The undo of an /award is a
refund (refunds table, audit_log), so it needs no schema of its own.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_members_phone", "members", ["phone"])


def downgrade() -> None:
    op.drop_index("ix_members_phone", table_name="members")
