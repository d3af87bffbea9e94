"""Staff at the counter: using coupons, recording purchases, looking members up; nobody else can."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalbot.chat.callbacks import encode
from loyalbot.storage.models import AuditLog
from loyalbot.storage.throttle import MemoryThrottle


async def _coupon_for(chat, person, reward="coffee"):
    member = await person.member()
    result = await chat.loyalty.redeem_reward(member.id, (await chat.reward(reward)).id,
                                              request_id=f"t-{person.user_id}", now=chat.clock())
    return result.coupon


async def test_staff_use_a_coupon_after_checking_it(chat):
    ann = await chat.registered(1, points=500, first_name="Ann")
    coupon = await _coupon_for(chat, ann)
    sam = await chat.staff(90)
    await sam.send(f"/use {coupon.code.lower()}")
    assert sam.sees("Ann") and sam.sees((await ann.member()).member_no)
    assert sam.sees("A coffee of your choice")
    assert [c.status for c in await chat.coupons(ann, status=None)] == ["active"]
    await sam.press("✅ Confirm")
    assert sam.sees("used")
    used, = await chat.coupons(ann, status=None)
    assert used.status == "used" and used.used_by == 90


async def test_a_used_coupon_is_refused(chat):
    ann = await chat.registered(2, points=500)
    coupon = await _coupon_for(chat, ann)
    sam = await chat.staff(90)
    await sam.send(f"/use {coupon.code}")
    await sam.press("✅ Confirm")
    await sam.send(f"/use {coupon.code}")
    assert sam.sees("already used")
    await sam.press_data(f"1:us:y:{coupon.code}")  # the old Confirm, pressed again
    assert sam.sees("already used")


async def test_an_expired_coupon_is_refused(chat):
    ann = await chat.registered(3, points=500)
    coupon = await _coupon_for(chat, ann)
    sam = await chat.staff(90, lang="zh_Hans")
    chat.clock.advance(days=31)
    await sam.send(f"/use {coupon.code}")
    assert sam.sees("这张优惠券已过期。")


async def test_unknown_and_garbage_codes_are_refused(chat):
    sam = await chat.staff(90)
    for code in ("AAAA-BBBB-CCCC-DDDD", "hello", "🙂" * 50):
        await sam.send(f"/use {code}")
        assert sam.sees("No coupon with that code."), code
    await sam.send("/use")
    assert sam.sees("/use followed by the coupon code")


async def test_non_staff_are_not_permitted_and_nothing_changes(chat):
    ann = await chat.registered(4, points=500)
    coupon = await _coupon_for(chat, ann)
    bob = await chat.registered(5)
    before = await chat.snapshot()
    for attempt in (f"/use {coupon.code}", f"/award {(await ann.member()).member_no} 10",
                    f"/member {(await ann.member()).member_no}"):
        await bob.send(attempt)
        assert bob.sees("only staff"), attempt
    await bob.press_data(f"1:us:y:{coupon.code}")
    assert bob.sees("only staff")
    assert await chat.snapshot() == before


async def test_staff_record_a_purchase(chat):
    ann = await chat.registered(6, first_name="Ann")
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    await sam.send(f"/award {number} 12,50 R-77")
    assert sam.sees("€12.50") and sam.sees("Ann") and sam.sees(number) and sam.sees("earns 12 points")
    assert await chat.count("purchases") == 0  # nothing until it is confirmed
    await sam.press("✅ Confirm")
    assert sam.sees("€12.50") and sam.sees("12 points awarded") and sam.sees("new balance 12")
    await sam.send(f"/award {number} 12.50 R-77")
    await sam.press("✅ Confirm")
    assert sam.sees("already recorded")
    assert (await ann.member()).balance == 12
    purchase_count = await chat.count("purchases")
    assert purchase_count == 1
    await sam.send(f"/award {number} 5")
    await sam.press("✅ Confirm")
    assert sam.sees("new balance 17")


async def test_award_refusals(chat):
    ann = await chat.registered(7)
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    before = await chat.snapshot()
    await sam.send(f"/award {number} -3")
    assert sam.sees("amount isn't valid")
    await sam.send("/award 123456789 10")
    assert sam.sees("can't find a member")
    await sam.send("/award")
    assert sam.sees("/award MEMBERNO AMOUNT")
    assert await chat.snapshot() == before


async def test_staff_look_a_member_up(chat):
    ann = await chat.registered(8, points=500, first_name="Ann")
    await _coupon_for(chat, ann)
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="P1", amount="20", now=chat.clock())
    sam = await chat.staff(90)
    await sam.send(f"/member {member.member_no}")
    assert sam.sees("Ann") and sam.sees("Green") and sam.sees("Points: 370")
    assert sam.sees("Active coupons: 1") and sam.sees("Last purchase: 10 Mar 2026")


async def test_help_shows_counter_commands_only_to_staff(chat):
    ann = await chat.registered(9)
    await ann.send("/help")
    assert ann.sees("/points") and not ann.sees("/award")
    await chat.loyalty.add_staff(9, "agent")
    await ann.send("/help")
    assert ann.sees("/award") and ann.sees("/use")


async def test_an_award_delivered_twice_is_recorded_once(chat):
    from loyalbot.chat.port import Incoming, parse_command

    ann = await chat.registered(8)
    number = (await ann.member()).member_no
    await chat.staff(91)  # Sam, at the counter
    command, args = parse_command(f"/award {number} 12.50")
    same_update = Incoming(user_id=91, chat_id=91, message_id=4242, command=command, args=args)
    first = await chat.router.handle(same_update)
    second = await chat.router.handle(same_update)  # e.g. a webhook retry of the same Telegram message
    sam = chat.person(91)
    for replies in (second, first):  # both confirmations offered, both pressed
        confirm = next(b for r in replies for row in r.buttons or [] for b in row if "Confirm" in b.text)
        await sam.press_data(confirm.data)
    assert (await ann.member()).balance == 12
    assert await chat.count("purchases") == 1


# --- the counter: strict amounts, confirm and undo, find by phone and name, throttling, staff help ---------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_lenient_amounts_are_refused_in_the_staff_language_and_nothing_is_recorded(chat):
    ann = await chat.registered(10)
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    mei = await chat.staff(91, lang="zh_Hans")
    before = await chat.snapshot()
    for typed in ("1e5", "1E+2", "1_000", "١٢٣", "５", "12.505", "1,000.50", "0", "NaN"):
        await sam.send(f"/award {number} {typed}")
        assert sam.sees("amount isn't valid") and sam.sees("12,50") and not sam.buttons(), typed
        await mei.send(f"/award {number} {typed}")
        assert mei.sees("金额无效") and not mei.buttons(), typed
    await sam.send(f"/award {number} 10000.01")
    assert sam.sees("above the counter's limit of 10,000")
    assert await chat.snapshot() == before


async def test_a_double_tap_on_confirm_records_once(chat):
    ann = await chat.registered(11)
    sam = await chat.staff(90)
    await sam.send(f"/award {(await ann.member()).member_no} 20")
    await sam.press("✅ Confirm")
    await sam.press("✅ Confirm")
    assert sam.sees("Already recorded")
    assert (await ann.member()).balance == 20 and await chat.count("purchases") == 1


async def test_cancel_stale_and_forged_award_buttons_record_nothing(chat):
    ann = await chat.registered(12)
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    bob = await chat.registered(13)
    before = await chat.snapshot()
    await sam.send(f"/award {number} 20")
    await sam.press("Cancel")
    assert sam.sees("nothing was recorded")
    await sam.press("✅ Confirm")  # the cancelled confirmation's button
    assert sam.sees("no longer valid")
    await sam.send(f"/award {number} 30")
    await sam.press_data(encode("aw", "y", "forged-token"))
    assert sam.sees("no longer valid")
    await bob.press_data(encode("aw", "y", "forged-token"))
    assert bob.sees("only staff")
    await sam.press_data("1:aw:y:" + "x" * 40)  # not even a token
    assert sam.sees("That button has expired")
    chat.clock.advance(minutes=11)
    await sam.press("✅ Confirm")
    assert sam.sees("expired after 10 minutes")
    for table in ("purchases", "ledger_entries"):
        rows = (await chat.snapshot())[table]
        assert rows == before[table], table


async def test_a_mistaken_award_is_undone_within_minutes_and_audited(chat):
    ann = await chat.registered(14, points=5)
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    await sam.send(f"/award {number} 40")
    await sam.press("✅ Confirm")
    assert sam.sees("Undo within 5 minutes") and "↩️ Undo" in sam.buttons()
    assert (await ann.member()).balance == 45
    chat.clock.advance(minutes=4)
    await sam.press("↩️ Undo")
    assert sam.sees("Undone") and sam.sees("€40.00") and sam.sees("40 points taken back")
    assert sam.sees("balance now 5")
    assert (await ann.member()).balance == 5
    await sam.press_data(encode("aw", "u", 1))  # tapped again
    assert (await ann.member()).balance == 5
    async with chat.db.read() as s:
        audits = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "refund_purchase"))).scalars().all()
    assert [a.actor for a in audits] == ["staff:90"]
    await sam.send(f"/award {number} 10")
    await sam.press("✅ Confirm")
    chat.clock.advance(minutes=6)
    await sam.press("↩️ Undo")
    assert sam.sees("can't be undone any more")
    assert (await ann.member()).balance == 15


async def test_staff_find_a_member_by_phone_at_the_counter(chat):
    await chat.registered(15, first_name="Ann")
    ann = chat.person(15)
    member = await ann.member()
    await chat.loyalty.update_member(member.id, phone="31612345678")
    sam = await chat.staff(90)
    await sam.send("/member 06 1234 5678")
    assert sam.sees("Ann") and sam.sees(member.member_no) and sam.sees("Points: 0")
    await sam.send("/award 0612345678 9,99")
    assert sam.sees("Ann") and sam.sees("€9.99")
    await sam.press("✅ Confirm")
    assert (await ann.member()).balance == 9
    await sam.send("/member 06 9999 0000")
    assert sam.sees("No member found")


async def test_staff_find_a_member_by_name_from_a_short_list(chat):
    for uid, name in ((20, "Ann"), (21, "Anna"), (22, "Annette"), (23, "Bob")):
        await chat.registered(uid, first_name=name)
    sam = await chat.staff(90)
    await sam.send("/member ann")
    assert sam.sees("3 members match")
    labels = sam.buttons()
    assert len(labels) == 3 and all(label.startswith("Ann") for label in labels)
    anna = await chat.person(21).member()
    await sam.press(f"Anna · {anna.member_no}")
    assert sam.sees("Anna") and sam.sees(anna.member_no)
    await sam.send("/member bob")
    assert sam.sees("Bob") and not sam.buttons()
    for uid in range(30, 40):
        await chat.registered(uid, first_name=f"Anders{uid}")
    await sam.send("/member and")
    assert len(sam.buttons()) == 8 and sam.sees("first 8")
    bob = await chat.registered(24)
    await bob.press_data(encode("sm", "s", anna.id))
    assert bob.sees("only staff") and not bob.sees(anna.member_no)


async def test_look_ups_are_throttled_per_staff_member_in_their_language(chat):
    clock = FakeMonotonic()
    chat.ctx.services.throttle = MemoryThrottle(clock=clock)
    ann = await chat.registered(40, first_name="Ann")
    number = (await ann.member()).member_no
    sam = await chat.staff(90, lang="zh_Hant")
    kim = await chat.staff(91)
    for _ in range(30):
        await sam.send(f"/member {number}")
        assert sam.sees("Ann")
    await sam.send(f"/member {number}")
    assert sam.sees("查詢過於頻繁") and sam.sees("60 秒") and not sam.sees("Ann")
    await sam.send("/use AAAA-BBBB-CCCC-DDDD")  # coupon guessing counts as well
    assert sam.sees("查詢過於頻繁")
    await sam.press_data(encode("us", "y", "AAAA-BBBB-CCCC-DDDD"))
    assert sam.sees("查詢過於頻繁")
    await kim.send(f"/member {number}")  # a colleague is not held up
    assert kim.sees("Ann")
    clock.now += 45
    await sam.send(f"/member {number}")
    assert sam.sees("15 秒")
    clock.now += 16
    await sam.send(f"/member {number}")
    assert sam.sees("Ann")


async def test_without_a_throttle_service_look_ups_are_still_throttled(chat):
    assert chat.ctx.services.throttle is None
    sam = await chat.staff(90)
    for _ in range(30):
        await sam.send("/member 123456782")
        assert not sam.sees("Too many")
    await sam.send("/member 123456782")
    assert sam.sees("Too many look-ups") and sam.sees("try again in")


@pytest.mark.parametrize(("lang", "counter", "support"), [
    ("en", "record a purchase", "take the conversation over"),
    ("zh_Hans", "记录消费", "接手对话"),
    ("zh_Hant", "記錄消費", "接手對話"),
])
async def test_staff_help_and_start_list_counter_and_support_commands(chat, lang, counter, support):
    sam = await chat.staff(90, lang=lang)
    await sam.send("/help")
    for command in ("/award", "/use", "/member", "/take", "/close", "/note"):
        assert sam.sees(command), command
    assert sam.sees(counter) and sam.sees(support) and not sam.sees("/points")
    await sam.send("/start")
    assert sam.sees("/award") and sam.sees(support) and len(sam.buttons()) == 1
    await sam.press(sam.buttons()[0])  # join as a member too
    assert "English" in " ".join(sam.buttons())  # the language question of joining
    assert await sam.member() is None


async def test_a_staff_member_who_is_a_member_sees_both_in_help(chat):
    sam = await chat.registered(90, first_name="Sam")
    await chat.loyalty.add_staff(90, "agent")
    await sam.send("/help")
    assert sam.sees("/points") and sam.sees("/award") and sam.sees("/take")
    await sam.send("/start")
    assert sam.sees("Welcome back")


async def test_use_by_member_number_or_phone_lists_their_coupons_to_check(chat):
    ann = await chat.registered(50, points=500, first_name="Ann")
    coupon = await _coupon_for(chat, ann)
    member = await ann.member()
    await chat.loyalty.update_member(member.id, phone="+31612345678")
    sam = await chat.staff(90)
    for who in (member.member_no, "06 12345678"):
        await sam.send(f"/use {who}")
        assert sam.sees("Active coupons of Ann") and sam.buttons() == [f"A coffee of your choice · {coupon.code}"]
    await sam.press(coupon.code)
    assert sam.sees("Mark it used?") and sam.sees(coupon.code)
    assert [c.status for c in await chat.coupons(ann, status=None)] == ["active"]
    await sam.press("✅ Confirm")
    assert (await chat.coupons(ann, status=None))[0].status == "used"
    await sam.send(f"/use {member.member_no}")
    assert sam.sees("no active coupons")
    bob = await chat.registered(51)
    await bob.press_data(encode("us", "c", coupon.code))
    assert bob.sees("only staff")


async def test_an_award_to_a_phone_two_members_share_asks_to_choose_and_records_nothing(chat):
    for uid, name in ((60, "Ann"), (61, "Kid")):
        person = await chat.registered(uid, first_name=name)
        await chat.loyalty.update_member((await person.member()).id, phone="31612345678")
    sam = await chat.staff(90)
    before = await chat.snapshot()
    await sam.send("/award 0612345678 10")
    assert sam.sees("Several members share this phone number") and len(sam.buttons()) == 2
    assert not any("Confirm" in label for label in sam.buttons())
    await sam.send("/member +31612345678")
    assert sam.sees("2 members match")
    assert (await chat.snapshot())["purchases"] == before["purchases"]
