"""spend and purchase windows kept by the scoring run, so a segment's window is counted without summing it again

A segment with a spend or purchases window summed every purchase of the window per member on each count (at
1,000,000 members, 2.4 s for a 90-day spend window). Now:

* `member_scores` keeps each member's net spend and purchases over 30, 90, 180 and 365 days, as of the scoring
  run's moment (scheduler/rfm.py);
* `purchase_changes` holds one row per member whose purchases were written since the run that last scored them,
  with a version bumped on every write. The database keeps it, whoever writes a purchase (the award paths,
  refunds, `loyalbot seed-demo`'s COPY): triggers on `purchases`, statement-level with a transition table on
  PostgreSQL, per row on SQLite. A scoring run deletes the rows whose version it saw, so a purchase written
  while it runs keeps its member's row;
* a count takes the stored figure for members without such a row, corrected by the purchases that crossed the
  window's edges since the run, and sums the purchases of the others (scheduler/segments.py).

Every member who has a purchase is marked here, so the figures a first run after this migration has not
stored yet are never used. An index on `audit_log` (action, created_at) finds the last run without a scan.

A later migration that rebuilds `purchases` on SQLite (`batch_alter_table`) drops its triggers: it must create
them again (`create_triggers`).

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

WINDOWS = (30, 90, 180, 365)

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION loyalbot_purchases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO purchase_changes (member_id, version)
    SELECT DISTINCT member_id, 1 FROM changed_purchases
    ON CONFLICT (member_id) DO UPDATE SET version = purchase_changes.version + 1;
    RETURN NULL;
END
$$
"""

_SQLITE_TRIGGER = """
CREATE TRIGGER purchases_changed_{event} AFTER {EVENT} ON purchases BEGIN
    INSERT INTO purchase_changes (member_id, version) VALUES (NEW.member_id, 1)
    ON CONFLICT (member_id) DO UPDATE SET version = version + 1;
END
"""


def create_triggers() -> None:
    """The triggers that mark a member's purchases as changed (see the module's docstring)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for event in ("insert", "update"):
            op.execute(f"CREATE TRIGGER purchases_changed_{event} AFTER {event.upper()} ON purchases "
                       "REFERENCING NEW TABLE AS changed_purchases FOR EACH STATEMENT "
                       "EXECUTE FUNCTION loyalbot_purchases_changed()")
    else:
        for event in ("insert", "update"):
            op.execute(_SQLITE_TRIGGER.format(event=event, EVENT=event.upper()))


def upgrade() -> None:
    op.create_table(
        'purchase_changes',
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_purchase_changes_member_id_members')),
        sa.PrimaryKeyConstraint('member_id', name=op.f('pk_purchase_changes')),
    )
    for days in WINDOWS:
        op.add_column('member_scores', sa.Column(f'spend_{days}d', sa.Numeric(14, 2), nullable=False,
                                                 server_default='0'))
        op.add_column('member_scores', sa.Column(f'purchases_{days}d', sa.Integer(), nullable=False,
                                                 server_default='0'))
    op.execute("INSERT INTO purchase_changes (member_id, version) SELECT DISTINCT member_id, 1 FROM purchases")
    create_triggers()
    op.create_index('ix_audit_log_action_created_at', 'audit_log', ['action', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_log_action_created_at', table_name='audit_log')
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS purchases_changed_{event}"
                   + (" ON purchases" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS loyalbot_purchases_changed()")
    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        for days in WINDOWS:
            batch_op.drop_column(f'spend_{days}d')
            batch_op.drop_column(f'purchases_{days}d')
    op.drop_table('purchase_changes')
