"""campaign results: the A/B variant of an outbox row, the control group, staff notices without a member

A campaign (a schedule with `params["holdout_pct"]` or `params["variants"]`) keeps part of its audience back
as a control group (`campaign_holdouts`, one row per schedule, member and run period) and renders the rest
from weighted template variants (`outbox.variant`). A stop-loss tells the staff group in an outbox row that
is about no member, so `outbox.member_id` may be empty.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_holdouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_campaign_holdouts_member_id_members')),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_campaign_holdouts_schedule_id_schedules')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_holdouts')),
    sa.UniqueConstraint('schedule_id', 'member_id', 'period', name='uq_campaign_holdouts_schedule_member_period')
    )
    with op.batch_alter_table('campaign_holdouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_holdouts_member_id'), ['member_id'], unique=False)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.alter_column('member_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE member_id IS NULL")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('member_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('variant')
    with op.batch_alter_table('campaign_holdouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_holdouts_member_id'))
    op.drop_table('campaign_holdouts')
