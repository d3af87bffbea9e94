"""The counter's services on SQLite and PostgreSQL: find a member by phone or name, undo an /award."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loyalbot.loyalty import errors
from loyalbot.loyalty.programme import load_programme
from loyalbot.storage.models import AuditLog, LedgerEntry
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def _join(loyalty, telegram_id, first, last=None, phone=None):
    return await loyalty.register_member(telegram_id=telegram_id, first_name=first, last_name=last, phone=phone,
                                         terms_accepted=True, now=NOW)


def test_the_shop_country_comes_from_the_programme_or_its_time_zone():
    programme = load_programme()
    assert programme.programme.timezone == "Europe/Amsterdam" and programme.country == "NL"
    taipei = programme.model_copy(update={"programme": programme.programme.model_copy(
        update={"timezone": "Asia/Taipei"})})
    assert taipei.country == "TW"
    utc = programme.model_copy(update={"programme": programme.programme.model_copy(update={"timezone": "UTC"})})
    assert utc.country is None
    chosen = utc.model_copy(update={"programme": utc.programme.model_copy(update={"country": "HK"})})
    assert chosen.country == "HK"


async def test_a_member_is_found_by_phone_however_staff_type_it(loyalty):
    ann = await _join(loyalty, 1, "Ann", phone="31612345678")  # as Telegram shares it
    bob = await _join(loyalty, 2, "Bob", phone="+15550001234")
    cat = await _join(loyalty, 3, "Cat", phone="06-1234 5679")  # stored as someone typed it
    await _join(loyalty, 4, "Dan")
    for typed in ("06 1234 5678", "0612345678", "+31 6 12345678", "0031612345678", "+31612345678",
                  "(06) 12-34-56-78"):
        assert [m.id for m in await loyalty.members_by_phone(typed)] == [ann.id], typed
    assert [m.id for m in await loyalty.members_by_phone("+1 555 000 1234")] == [bob.id]
    assert [m.id for m in await loyalty.members_by_phone("06 12345679")] == [cat.id]
    for nobody in ("06 1234 5670", "+44 20 7946 0000", "12", "Ann", ""):
        assert await loyalty.members_by_phone(nobody) == [], nobody


async def test_members_sharing_a_phone_are_all_found_and_the_erased_are_not(loyalty):
    ann = await _join(loyalty, 1, "Ann", phone="31612345678")
    kid = await _join(loyalty, 2, "Kid", phone="+31612345678")
    assert {m.id for m in await loyalty.members_by_phone("0612345678")} == {ann.id, kid.id}
    await loyalty.erase_member(kid.id, actor="test", now=NOW)
    assert [m.id for m in await loyalty.members_by_phone("0612345678")] == [ann.id]


async def test_a_member_is_found_by_the_start_of_a_name(loyalty):
    lee = await _join(loyalty, 1, "Ann", "Lee")
    anna = await _join(loyalty, 2, "Anna", "Smith")
    annes = await _join(loyalty, 3, "Bob", "Annes")
    await _join(loyalty, 4, "Joanne", "Ng")
    wang = await _join(loyalty, 5, "小明", "王")
    assert [m.id for m in await loyalty.members_by_name("ann")] == [lee.id, anna.id, annes.id]
    assert [m.id for m in await loyalty.members_by_name("ANN  lee")] == [lee.id]
    assert [m.id for m in await loyalty.members_by_name("smi")] == [anna.id]
    assert [m.id for m in await loyalty.members_by_name("小明")] == [wang.id]
    assert [m.id for m in await loyalty.members_by_name("ann", limit=2)] == [lee.id, anna.id]
    for nobody in ("a", "%", "_nn", "an%", "zed", ""):
        assert await loyalty.members_by_name(nobody) == [], nobody
    await loyalty.erase_member(lee.id, actor="test", now=NOW)
    assert [m.id for m in await loyalty.members_by_name("ann")] == [anna.id, annes.id]


async def _counter_purchase(loyalty, member, staff_id=90, amount="25.00", ref="counter:90:90:1"):
    return await loyalty.award_purchase(member.id, external_id=ref, amount=amount, source="counter",
                                        recorded_by=staff_id, now=NOW)


async def test_an_award_is_undone_once_and_audited_with_the_staff_member(loyalty, db):
    await loyalty.add_staff(90, "agent")
    ann = await _join(loyalty, 1, "Ann")
    bought = await _counter_purchase(loyalty, ann)
    assert (await loyalty.member(ann.id)).balance == 25
    undone = await loyalty.undo_counter_purchase(bought.purchase.id, staff_id=90, now=NOW + timedelta(minutes=4))
    assert not undone.refund.repeated and undone.refund.points_taken == 25
    assert undone.member.balance == 0 and (await loyalty.member(ann.id)).balance == 0
    again = await loyalty.undo_counter_purchase(bought.purchase.id, staff_id=90, now=NOW + timedelta(minutes=4))
    assert again.refund.repeated and (await loyalty.member(ann.id)).balance == 0
    assert await loyalty.ledger_check(ann.id) == (0, 0, 0)
    async with db.read() as s:
        audits = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "refund_purchase"))).scalars().all()
        refunds = (await s.execute(sa.select(LedgerEntry).where(LedgerEntry.kind == "refund"))).scalars().all()
    assert [(a.actor, a.member_id, a.details["amount"]) for a in audits] == [("staff:90", ann.id, "25.00")]
    assert [r.delta for r in refunds] == [-25]


async def test_an_undo_is_refused_late_by_others_or_for_shop_purchases_and_changes_nothing(loyalty, db):
    await loyalty.add_staff(90, "agent")
    await loyalty.add_staff(91, "agent")
    await loyalty.add_staff(92, "operator")
    ann = await _join(loyalty, 1, "Ann")
    bought = await _counter_purchase(loyalty, ann)
    shop = await loyalty.award_purchase(ann.id, external_id="SHOP-1", amount="10", now=NOW)
    partly = await _counter_purchase(loyalty, ann, ref="counter:90:90:2", amount="30")
    await loyalty.refund_purchase("counter:90:90:2", refund_id="R-1", amount="5", now=NOW)
    before = await snapshot(db)
    attempts = [
        (bought.purchase.id, 90, NOW + timedelta(minutes=6), errors.UndoExpired),
        (bought.purchase.id, 91, NOW, errors.UndoNotPossible),  # another agent
        (bought.purchase.id, 5, NOW, errors.NotPermitted),  # not staff at all
        (shop.purchase.id, 90, NOW, errors.UndoNotPossible),  # a shop's purchase is refunded by the shop
        (partly.purchase.id, 90, NOW, errors.UndoNotPossible),  # already partly refunded
        (999_999, 90, NOW, errors.UnknownPurchase),
    ]
    for purchase_id, staff_id, when, refusal in attempts:
        with pytest.raises(refusal):
            await loyalty.undo_counter_purchase(purchase_id, staff_id=staff_id, now=when)
    assert await snapshot(db) == before
    # An operator may undo a colleague's mistake (within the window).
    undone = await loyalty.undo_counter_purchase(bought.purchase.id, staff_id=92, now=NOW)
    assert undone.refund.refund.amount == Decimal("25.00")


async def test_the_preview_counts_points_as_the_award_will(loyalty):
    ann = await _join(loyalty, 1, "Ann")
    member = await loyalty.member(ann.id)
    preview = loyalty.points_preview(member, Decimal("12.50"), now=NOW)
    result = await _counter_purchase(loyalty, ann, amount="12.50")
    assert preview == result.points == 12
