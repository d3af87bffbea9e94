"""Offer coupons: a campaign's free coupon, issued to a member in the transaction that sends its message.

A campaign (a schedule with an offer, scheduler/offers.py) promises each recipient a coupon for one reward.
The code and expiry are fixed when the message is planned, so its text can show them; the coupon itself
is written here, in the caller's transaction that hands the outbox row over to Telegram, so a coupon
exists exactly when its message may have gone out: never for a row skipped, delayed or never handed over.

One per member per campaign: the coupon's request id is ``offer:<schedule>:<member>`` (coupons.request_id
is unique). Handing the same row over again (a dispatcher that resends after a crash) finds the coupon it
issued the first time and issues nothing; a second message of the same campaign promising another code
finds the first coupon and is refused (the caller skips that row), so a member is never shown a code that
does not exist.

An offer coupon costs no points and writes no ledger entry (the balance is untouched, so the ledger
invariant holds trivially). It does not take the reward's stock: the catalogue's stock is what members
may buy with points, and an operator sizing a campaign decides its reach by its segment. It does count
as a coupon of the reward the member holds, so a reward with a per-member limit of one is not redeemed
again by a member who was given it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalbot.storage import as_utc
from loyalbot.storage.models import Coupon


def offer_request_id(schedule_id: int, member_id: int) -> str:
    """The coupon request id of a campaign's coupon for a member: one per member per campaign."""
    return f"offer:{schedule_id}:{member_id}"


@dataclass(frozen=True)
class OfferIssue:
    """One coupon an outbox row promises: which row, for whom, and the code and expiry its text shows."""

    row_id: int
    schedule_id: int
    member_id: int
    reward_id: int
    code: str
    expires_at: datetime


async def issue_offer_coupons(conn: AsyncConnection, issues: Sequence[OfferIssue], now: datetime, *,
                              postgres: bool) -> dict[int, int | None]:
    """Issue the promised coupons in `conn`'s transaction; row id -> coupon id, or None when the member
    already holds another coupon of this campaign (that row must not be sent)."""
    if not issues:
        return {}
    insert = (pg_insert if postgres else sqlite_insert)(Coupon)
    values = [dict(code=i.code, request_id=offer_request_id(i.schedule_id, i.member_id), reward_id=i.reward_id,
                   member_id=i.member_id, points_spent=0, status="active", issued_at=now,
                   expires_at=as_utc(i.expires_at)) for i in issues]
    await conn.execute(insert.on_conflict_do_nothing(index_elements=["request_id"]), values)
    found: dict[str, tuple[int | None, str | None]] = {request_id: (coupon_id, code) for request_id, coupon_id, code in (await conn.execute(
        sa.select(Coupon.request_id, Coupon.id, Coupon.code)
        .where(Coupon.request_id.in_([v["request_id"] for v in values])))).all()}
    issued: dict[int, int | None] = {}
    for issue in issues:
        coupon_id, code = found.get(offer_request_id(issue.schedule_id, issue.member_id), (None, None))
        issued[issue.row_id] = coupon_id if code == issue.code else None
    return issued


async def campaign_coupon_holders(conn: AsyncConnection, schedule_id: int, member_ids: Sequence[int]) -> set[int]:
    """Which of these members already hold a coupon of this campaign (of any status)."""
    if not member_ids:
        return set()
    keys = [offer_request_id(schedule_id, m) for m in member_ids]
    rows = await conn.execute(sa.select(Coupon.member_id).where(Coupon.request_id.in_(keys)))
    return {int(m) for (m,) in rows.all()}


__all__ = ["OfferIssue", "campaign_coupon_holders", "issue_offer_coupons", "offer_request_id"]
