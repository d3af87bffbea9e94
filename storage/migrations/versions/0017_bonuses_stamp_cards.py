"""bonus campaigns and stamp cards

A bonus campaign's points are kept once per member, bonus and period (bonus_grants); a member's stamp card
holds its stamps and completed cycles (stamp_cards), and each stamp given is keyed by its purchase or counter
update (stamp_events), so a repeat stamps nothing.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bonus_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('bonus_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_bonus_grants_member_id_members')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_bonus_grants_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bonus_grants')),
    sa.UniqueConstraint('member_id', 'bonus_code', 'period', name=op.f('uq_bonus_grants_member_id_bonus_code_period'))
    )
    op.create_index(op.f('ix_bonus_grants_member_id'), 'bonus_grants', ['member_id'], unique=False)
    op.create_table('stamp_cards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('card_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('stamps', sa.Integer(), nullable=False),
    sa.Column('cycles', sa.Integer(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('stamps >= 0', name=op.f('ck_stamp_cards_stamps_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_stamp_cards_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stamp_cards')),
    sa.UniqueConstraint('member_id', 'card_code', name=op.f('uq_stamp_cards_member_id_card_code'))
    )
    op.create_index(op.f('ix_stamp_cards_member_id'), 'stamp_cards', ['member_id'], unique=False)
    op.create_table('stamp_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('card_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('stamps', sa.Integer(), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.BigInteger(), nullable=True),
    sa.Column('coupons_issued', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_stamp_events_member_id_members')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_stamp_events_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stamp_events')),
    sa.UniqueConstraint('card_code', 'key', name=op.f('uq_stamp_events_card_code_key'))
    )
    op.create_index(op.f('ix_stamp_events_member_id'), 'stamp_events', ['member_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_stamp_events_member_id'), table_name='stamp_events')
    op.drop_table('stamp_events')
    op.drop_index(op.f('ix_stamp_cards_member_id'), table_name='stamp_cards')
    op.drop_table('stamp_cards')
    op.drop_index(op.f('ix_bonus_grants_member_id'), table_name='bonus_grants')
    op.drop_table('bonus_grants')
