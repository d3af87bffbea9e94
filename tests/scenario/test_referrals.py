"""Referrals and pending points in the chat: a member shares their link, a friend joins through it and buys,
the return window passes, and both see their reward."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalbot.chat.i18n import Translator
from loyalbot.handlers.config import ChatConfig
from loyalbot.loyalty.programme import Pending, Referrals
from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _with_window(chat: Chat) -> None:
    programme = chat.loyalty.programme.model_copy(update={
        "pending": Pending(return_window_days=14),
        "referrals": Referrals(referrer_points=100, friend_points=50, min_purchase=10)})
    await chat.loyalty.save_programme(programme, author="test", based_on=chat.loyalty.in_force.version)


async def test_a_friend_joins_through_the_link_buys_and_both_are_rewarded_after_the_window(chat: Chat) -> None:
    await _with_window(chat)
    ann = await chat.registered_member("Ann")
    await ann.send("/invite")
    code = await chat.loyalty.referral_code((await ann.record()).id)
    assert f"?start={code}" in ann.last_text
    share = [b for row in ann.last_message["reply_markup"]["inline_keyboard"] for b in row]
    assert share and share[0]["url"].startswith("https://t.me/share/url?url=")
    assert code in share[0]["url"]

    bob = await chat.member("Bob")
    await bob.join(start=f"/start {code}")
    assert bob.saw("friend's invitation")
    bob_id = (await bob.record()).id
    await chat.loyalty.award_purchase(bob_id, external_id="bob-1", amount="20", now=chat.clock())
    await bob.send("/points")
    cleared_on = chat.clock() + timedelta(days=14)
    member = await bob.record()
    tr = Translator("en", timezone=member.timezone, format_locale=ChatConfig().format_locales["en"])
    assert tr.n("points.pending", "points.pending_plural", 20, date=cleared_on) in bob.last_text
    assert (await bob.record()).balance == 0
    await bob.send("/card")
    assert tr.n("card.pending", "card.pending_plural", 20, date=cleared_on) in bob.last_text

    chat.clock.advance(days=14, minutes=1)
    await chat.loyalty.ledger_upkeep(now=chat.clock())
    await bob.send("/points")
    assert "70 points" in bob.last_text and "pending" not in bob.last_text
    await ann.send("/invite")
    assert "Friends who joined: 1 · who bought: 1" in ann.last_text
    await ann.send("/points")
    assert "100 points" in ann.last_text and "Referral" in ann.last_text


async def test_a_member_opening_a_link_is_told_links_are_for_newcomers(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    bob = await chat.registered_member("Bob")
    code = await chat.loyalty.referral_code((await ann.record()).id)
    await bob.send(f"/start {code}")
    assert bob.saw("already a member")
    stats = await chat.loyalty.referral_stats((await ann.record()).id)
    assert stats.joined == 0


async def test_a_forged_code_still_lets_the_newcomer_join(chat: Chat) -> None:
    carol = await chat.member("Carol")
    await carol.join(start="/start rAAAAAAAAAAAA")
    assert carol.saw("not valid")
    assert (await carol.record()).member_no


async def test_the_invite_page_speaks_the_members_language(chat: Chat) -> None:
    mei = await chat.registered_member("Mei", language_code="zh-hant")
    await mei.send("/invite")
    assert "邀請好友" in mei.last_text and "?start=r" in mei.last_text
    share = [b for row in mei.last_message["reply_markup"]["inline_keyboard"] for b in row]
    assert share[0]["text"] == "📤 分享給好友"
