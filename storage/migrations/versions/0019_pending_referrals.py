"""pending points, referral codes and referrals

A purchase's points can wait out the return window in `pending_points` (outside the ledger, so the
balance stays what can be spent) until a clearing job turns them into an earn lot; a refund records
how much of it cancelled pending points. Each member can have one referral code; each newcomer who
joined through one has one `referrals` row.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refunds') as batch:
        batch.add_column(sa.Column('pending_cancelled', sa.Integer(), nullable=False, server_default='0'))
    op.create_table('pending_points',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('lot_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('available_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('cleared_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint('points >= 0', name=op.f('ck_pending_points_points_not_negative')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.id'], name=op.f('fk_pending_points_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_pending_points_member_id_members')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_pending_points_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_points')),
    sa.UniqueConstraint('purchase_id', name=op.f('uq_pending_points_purchase_id'))
    )
    op.create_index('ix_pending_points_due', 'pending_points', ['status', 'available_at'])
    op.create_index(op.f('ix_pending_points_member_id'), 'pending_points', ['member_id'])
    op.create_table('referral_codes',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_referral_codes_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_referral_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_referral_codes_code'))
    )
    op.create_table('referrals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('referrer_id', sa.Integer(), nullable=False),
    sa.Column('newcomer_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('settled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['newcomer_id'], ['members.id'], name=op.f('fk_referrals_newcomer_id_members')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_referrals_purchase_id_purchases')),
    sa.ForeignKeyConstraint(['referrer_id'], ['members.id'], name=op.f('fk_referrals_referrer_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals')),
    sa.UniqueConstraint('newcomer_id', name=op.f('uq_referrals_newcomer_id'))
    )
    op.create_index(op.f('ix_referrals_referrer_id'), 'referrals', ['referrer_id'])
    op.create_index(op.f('ix_referrals_status'), 'referrals', ['status'])


def downgrade() -> None:
    op.drop_table('referrals')
    op.drop_table('referral_codes')
    op.drop_table('pending_points')
    with op.batch_alter_table('refunds') as batch:
        batch.drop_column('pending_cancelled')
