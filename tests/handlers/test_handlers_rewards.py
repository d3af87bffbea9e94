"""Browsing the catalogue, redeeming points for a coupon, and every reason it can be refused."""

from __future__ import annotations


async def test_redeeming_a_reward_gives_a_coupon_with_qr_and_expiry(chat):
    ann = await chat.registered(1, points=500)
    await ann.send("🎁 Rewards")
    assert ann.sees("you have 500 points")
    await ann.press("A coffee of your choice")
    assert ann.sees("for 150 points")
    assert ann.sees("350 points left")
    await ann.press("✅ Confirm")
    photo, = ann.photos()
    coupon, = await chat.coupons(ann)
    assert coupon.code in photo.text
    assert "9 Apr 2026" in photo.text  # 30 days of validity
    assert (await ann.member()).balance == 350


async def test_a_double_tap_on_confirm_gives_one_coupon(chat):
    ann = await chat.registered(2, points=500)
    await ann.send("/rewards")
    await ann.press("A coffee of your choice")
    await ann.press("✅ Confirm")
    assert len(ann.photos()) == 1
    await ann.press("✅ Confirm")
    assert [r.toast for r in ann.replies] == ["Already done: your coupon is in the chat above (and under /coupons)."]
    assert not any(r.text or r.media for r in ann.replies), "the second tap adds nothing to the chat"
    assert len(await chat.coupons(ann)) == 1
    assert (await ann.member()).balance == 350


async def test_not_enough_points_is_explained_and_nothing_is_redeemed(chat):
    ann = await chat.registered(3, points=100)
    await ann.send("/rewards")
    assert ann.sees("50 more points needed")
    before = await chat.snapshot()
    await ann.press("A coffee of your choice")
    assert ann.sees("50 more points needed")
    coffee = await chat.reward("coffee")
    await ann.press_data(f"1:rw:c:{coffee.id}:forgedrequest1")
    assert ann.sees("Not enough points yet: this costs 150 and you have 100.")
    assert await chat.snapshot() == before


async def test_out_of_stock_is_explained(chat):
    ann = await chat.registered(4, points=1000)
    tote = await chat.reward("tote")
    await chat.loyalty.set_reward_stock(tote.id, 0)
    await ann.send("/rewards")
    assert ann.sees("Out of stock")
    before = await chat.snapshot()
    await ann.press_data(f"1:rw:c:{tote.id}:req000000001")
    assert ann.sees("out of stock")
    assert await chat.snapshot() == before


async def test_a_reward_above_the_members_tier_is_refused(chat):
    ann = await chat.registered(5, points=1000, lang="zh_Hans")
    beans = await chat.reward("beans")
    await ann.send("/rewards")
    assert ann.sees("银卡及以上会员专享")
    before = await chat.snapshot()
    await ann.press_data(f"1:rw:s:{beans.id}")
    assert ann.sees("银卡及以上会员专享")
    await ann.press_data(f"1:rw:c:{beans.id}:req000000002")
    assert ann.sees("这个礼品是银卡及以上会员专享。")
    assert await chat.snapshot() == before


async def test_the_per_member_limit_is_explained(chat):
    ann = await chat.registered(6, points=2000)
    await ann.send("/rewards")
    await ann.press("Lumen canvas tote bag")
    await ann.press("✅ Confirm")
    await ann.send("/rewards")
    assert ann.sees("You already have as many as allowed (1)")


async def test_the_catalogue_is_paged(chat):
    ann = await chat.registered(7, points=10)
    await ann.send("/rewards")
    assert ann.sees("page 1/2")
    assert not ann.sees("Brunch for two")
    await ann.press("Next »")
    assert ann.replies[0].edit
    assert ann.sees("Brunch for two") and ann.sees("page 2/2")
    await ann.press("« Previous")
    assert ann.sees("page 1/2")


async def test_cancel_redeems_nothing(chat):
    ann = await chat.registered(8, points=500)
    await ann.send("/rewards")
    await ann.press("A coffee of your choice")
    await ann.press("Cancel")
    assert ann.sees("nothing redeemed")
    assert await chat.count("coupons") == 0


async def test_coupons_list_shows_active_ones_and_on_request_old_ones(chat):
    ann = await chat.registered(9, points=1000)
    member = await ann.member()
    for request in ("a", "b"):
        await chat.loyalty.redeem_reward(member.id, (await chat.reward("coffee")).id, request_id=request,
                                         now=chat.clock())
    staff = await chat.staff(99)
    coupon_b, coupon_a = await chat.coupons(ann)  # newest first
    await chat.loyalty.use_coupon(coupon_a.code, staff_id=99, now=chat.clock())
    await ann.send("🎟 Coupons")
    assert ann.sees(coupon_b.code) and not ann.sees(coupon_a.code)
    photo, = ann.photos()  # the one active coupon comes as its QR right away
    assert "Valid until 9 Apr 2026" in photo.text
    await ann.press("Used and expired")
    assert ann.sees(coupon_a.code) and ann.sees("used")
    assert staff.user_id == 99


async def test_several_coupons_are_listed_with_a_qr_button_each(chat):
    ann = await chat.registered(10, points=1000)
    member = await ann.member()
    coffee = await chat.reward("coffee")
    for request in ("a", "b", "c"):
        await chat.loyalty.redeem_reward(member.id, coffee.id, request_id=request, now=chat.clock())
    await ann.send("/coupons")
    assert ann.sees("Your 3 coupons")
    codes = [c.code for c in await chat.coupons(ann)]
    assert all(ann.sees(code) for code in codes)
    await ann.press("Show QR")
    photo, = ann.photos()
    assert photo.text.count("<code>") == 1 and any(code in photo.text for code in codes)


async def test_a_forged_coupon_button_shows_nothing_of_someone_else(chat):
    ann = await chat.registered(11, points=1000)
    bob = await chat.registered(12)
    member = await ann.member()
    result = await chat.loyalty.redeem_reward(member.id, (await chat.reward("coffee")).id, request_id="x",
                                              now=chat.clock())
    await bob.press_data(f"1:cp:q:{result.coupon.id}")
    assert not bob.photos()
    assert bob.sees("no longer active")
