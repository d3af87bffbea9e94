"""Staff at the counter: using coupons, recording purchases, looking members up; nobody else can."""

from __future__ import annotations


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
    ann = await chat.registered(6)
    number = (await ann.member()).member_no
    sam = await chat.staff(90)
    await sam.send(f"/award {number} 12,50 R-77")
    assert sam.sees("€12.50") and sam.sees("12 points awarded") and sam.sees("new balance 12")
    await sam.send(f"/award {number} 12.50 R-77")
    assert sam.sees("already recorded")
    assert (await ann.member()).balance == 12
    purchase_count = await chat.count("purchases")
    assert purchase_count == 1
    await sam.send(f"/award {number} 5")
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
    from handlers.port import Incoming, parse_command

    ann = await chat.registered(8)
    number = (await ann.member()).member_no
    await chat.staff(91)  # Sam, at the counter
    command, args = parse_command(f"/award {number} 12.50")
    same_update = Incoming(user_id=91, chat_id=91, message_id=4242, command=command, args=args)
    await chat.router.handle(same_update)
    await chat.router.handle(same_update)  # e.g. a webhook retry of the same Telegram message
    assert (await ann.member()).balance == 12
