"""demo page identities (no schema change)

The demo page keeps its world (identities, chats, topics) in tables of its own that the local Bot API
server makes in the demo's SQLite file (bot/local_api/saved.py), outside this schema; the revision
stays so that the chain of revisions that existing stores went through is unchanged.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
