"""The expiry variants as a member sees them in /points on both runtimes: under a yearly reset every point
lapses at the next reset day; with activity extending expiry, a purchase moves the next expiry out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalbot.chat.i18n import Translator
from loyalbot.handlers.config import ChatConfig
from loyalbot.loyalty.programme import programme_from_data
from tests.scenario.driver import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def with_expiry(chat: Chat, **expiry: object) -> None:
    data = chat.loyalty.programme.model_dump(mode="python", exclude_none=True)
    data["expiry"] = {**data["expiry"], **expiry}
    await chat.loyalty.save_programme(programme_from_data(data), author="test", based_on=chat.loyalty.in_force.version)


def expiring_line(member, upcoming) -> str:
    tr = Translator(member.language, timezone=member.timezone, format_locale=ChatConfig().format_locales["en"])
    return tr.n("points.expiring", "points.expiring_plural", upcoming.points, date=upcoming.expires_at)


async def test_under_a_yearly_reset_points_lapse_on_the_reset_day(chat: Chat) -> None:
    await with_expiry(chat, mode="yearly_reset", reset_month_day="01-01", carry_over_pct=20)
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="50")
    summary = await chat.loyalty.points_summary(member.id)
    upcoming = summary.next_expiry
    assert upcoming is not None and upcoming.points == 50
    assert upcoming.expires_at == chat.loyalty.programme.next_reset(chat.clock())
    await ann.send("/points")
    assert expiring_line(member, upcoming) in ann.last_text


async def test_a_purchase_moves_every_open_lots_expiry_out_when_activity_extends_it(chat: Chat) -> None:
    await with_expiry(chat, mode="activity_extends", months=3, extend_months=6)
    ann = await chat.registered_member("Ann")
    member = await ann.record()
    await chat.loyalty.award_purchase(member.id, external_id="till-1", amount="50")
    first = (await chat.loyalty.points_summary(member.id)).next_expiry
    assert first is not None
    later = chat.clock() + timedelta(days=60)
    await chat.loyalty.award_purchase(member.id, external_id="till-2", amount="10", occurred_at=later, now=later)
    moved = (await chat.loyalty.points_summary(member.id)).next_expiry
    assert moved is not None and moved.expires_at > first.expires_at and moved.points == 60
    await ann.send("/points")
    assert expiring_line(member, moved) in ann.last_text
