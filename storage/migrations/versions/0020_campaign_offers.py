"""campaign offers: the coupon an outbox row promises, and the coupon it issued

A schedule may attach a reward to its message (scheduler/offers.py). The row keeps what the message promises
(`offer`: the coupon's code, reward and expiry, fixed when planned) and, once handed over to Telegram, the
coupon issued for it (`coupon_id`, in the same transaction as the hand-over).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offer', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('coupon_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_outbox_coupon_id_coupons'), 'coupons', ['coupon_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_coupon_id_coupons'), type_='foreignkey')
        batch_op.drop_column('coupon_id')
        batch_op.drop_column('offer')
