"""pending bonuses and refunds that take back stamps: a purchase's bonus points wait with it

A purchase inside its return window now has a `pending_points` row per reason: "purchase" for its own points
and "bonus:<code>" for each bonus campaign it earned, so the bonuses wait (and are cancelled) with the points
they come from; the unique key moves from `purchase_id` to (`purchase_id`, `reason`). A refund takes back the
stamps its purchase added; when the completed card's coupon was already used the card is left in debt, so
`stamp_cards.stamps` may now be below zero.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pending_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=40), nullable=False, server_default='purchase'))
        batch_op.drop_constraint(op.f('uq_pending_points_purchase_id'), type_='unique')
        batch_op.create_unique_constraint(op.f('uq_pending_points_purchase_id_reason'), ['purchase_id', 'reason'])
    with op.batch_alter_table('stamp_cards', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_stamp_cards_stamps_not_negative'), type_='check')


def downgrade() -> None:
    with op.batch_alter_table('stamp_cards', schema=None) as batch_op:
        batch_op.execute("UPDATE stamp_cards SET stamps = 0 WHERE stamps < 0")
        batch_op.create_check_constraint('stamps_not_negative', 'stamps >= 0')
    with op.batch_alter_table('pending_points', schema=None) as batch_op:
        batch_op.execute("DELETE FROM pending_points WHERE reason <> 'purchase'")
        batch_op.drop_constraint(op.f('uq_pending_points_purchase_id_reason'), type_='unique')
        batch_op.create_unique_constraint(op.f('uq_pending_points_purchase_id'), ['purchase_id'])
        batch_op.drop_column('reason')
