"""campaign scores, stage changes, named segments

Each member's RFM scores and lifecycle stage from the last scoring run (member_scores), every change of stage it
found (member_stage_changes), and the segments operators save by name (segments). Members gain indexes on the
days since the last purchase and the last visit (from joining without one), which segments filter on.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    sa.UniqueConstraint('name', name=op.f('uq_segments_name'))
    )
    op.create_table('member_scores',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('r', sa.SmallInteger(), nullable=False),
    sa.Column('f', sa.SmallInteger(), nullable=False),
    sa.Column('m', sa.SmallInteger(), nullable=False),
    sa.Column('lifecycle', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('spend', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('purchases', sa.Integer(), nullable=False),
    sa.Column('last_purchase_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_scores_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_scores'))
    )
    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.create_index('ix_member_scores_lifecycle', ['lifecycle'], unique=False)
        batch_op.create_index('ix_member_scores_r_f_m', ['r', 'f', 'm'], unique=False)

    op.create_table('member_stage_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('to_stage', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_stage_changes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_stage_changes'))
    )
    with op.batch_alter_table('member_stage_changes', schema=None) as batch_op:
        batch_op.create_index('ix_member_stage_changes_at_to_stage', ['at', 'to_stage'], unique=False)
        batch_op.create_index(batch_op.f('ix_member_stage_changes_member_id'), ['member_id'], unique=False)

    # Expression indexes (autogenerate cannot compare them): days since the last purchase / visit, or joining.
    op.create_index('ix_members_since_purchase', 'members', [sa.text('coalesce(last_purchase_at, joined_at)')])
    op.create_index('ix_members_since_visit', 'members', [sa.text('coalesce(last_activity_at, joined_at)')])



def downgrade() -> None:
    op.drop_index('ix_members_since_visit', table_name='members')
    op.drop_index('ix_members_since_purchase', table_name='members')

    with op.batch_alter_table('member_stage_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_stage_changes_member_id'))
        batch_op.drop_index('ix_member_stage_changes_at_to_stage')

    op.drop_table('member_stage_changes')
    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_member_scores_r_f_m')
        batch_op.drop_index('ix_member_scores_lifecycle')

    op.drop_table('member_scores')
    op.drop_table('segments')
