"""The member card (photo with caption) and the points overview with expiry dates per locale."""

from __future__ import annotations

PNG = b"\x89PNG\r\n\x1a\n"


async def test_card_is_a_qr_photo_with_number_tier_points_and_progress(chat):
    ann = await chat.registered(1, points=40)
    await ann.send("💳 Card")
    member = await ann.member()
    photo, = ann.photos()
    assert photo.media.data.startswith(PNG)
    caption = photo.text
    assert member.member_no in caption
    assert "Green" in caption
    assert "Points: <b>40</b>" in caption
    assert "Spend €300.00 more in 12 months to reach Silver" in caption
    assert len(caption) <= 1024


async def test_card_progress_follows_spending(chat):
    ann = await chat.registered(2, lang="zh_Hans")
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="R-1", amount="180", now=chat.clock())
    await ann.send("/card")
    caption = ann.photos()[0].text
    assert "绿卡" in caption
    assert "12 个月内再消费 €120.00 即可升级为银卡" in caption


async def test_points_show_balance_expiry_and_latest_entries_in_english(chat):
    ann = await chat.registered(3)
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="R-1", amount="120", now=chat.clock())
    await ann.send("/points")
    assert ann.sees("You have <b>120</b> points.")
    assert ann.sees("120 points expire on 31 Mar 2027.")
    assert ann.sees("10 Mar 2026 · Purchase · +120")


async def test_points_expiry_is_formatted_for_chinese_members(chat):
    ann = await chat.registered(4, lang="zh_Hant")
    member = await ann.member()
    await chat.loyalty.award_purchase(member.id, external_id="R-1", amount="1", now=chat.clock())
    await ann.send("⭐ 積分")
    assert ann.sees("您有 <b>1</b> 積分。")
    assert ann.sees("1 積分將於 2027年3月31日 到期。")
    assert ann.sees("消費 · +1")


async def test_points_of_a_new_member(chat):
    ann = await chat.registered(5)
    await ann.send("/points")
    assert ann.sees("You have <b>0</b> points.")
    assert ann.sees("No points yet")


async def test_points_list_at_most_ten_entries_newest_first(chat):
    ann = await chat.registered(6)
    member = await ann.member()
    for i in range(12):
        chat.clock.advance(days=1)
        await chat.loyalty.award_purchase(member.id, external_id=f"R-{i}", amount=str(i + 1), now=chat.clock())
    await ann.send("/points")
    lines = [line for line in ann.texts().splitlines() if "Purchase" in line]
    assert len(lines) == 10
    assert lines[0].endswith("+12")
