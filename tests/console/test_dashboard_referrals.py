"""The dashboard counts referrals (friends who joined through a link) and conversions by the shop's local day,
on the page and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.console.dashboard_stats import build_board, parse_period

PASSWORD = "correct horse battery"
ZONE = "Europe/Amsterdam"
NOW = datetime(2026, 6, 30, 10, 0, tzinfo=UTC)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 6, day, hour, 0, tzinfo=UTC)


async def two_friends_one_converted(loyalty):
    ann = await loyalty.register_member(telegram_id=1, first_name="Ann", terms_accepted=True, now=at(1))
    code = await loyalty.referral_code(ann.id, now=at(1))
    friends = []
    for n in range(2):
        friend = await loyalty.register_member(telegram_id=10 + n, first_name="Bo", terms_accepted=True,
                                               now=at(10 + n))
        await loyalty.link_referral(friend.id, code, now=at(10 + n))
        friends.append(friend)
    await loyalty.award_purchase(friends[0].id, external_id="f-1", amount="25", now=at(12))
    await loyalty.ledger_upkeep(now=at(12, 10))  # no return window in the default programme: converted at once


async def test_referrals_and_conversions_are_counted_by_day(db, loyalty):
    await two_friends_one_converted(loyalty)
    board = await build_board(db, parse_period("2026-06-09", "2026-06-13", None, zone=ZONE, now=NOW), now=NOW)
    rows = {row[0].isoformat(): row[1:] for row in board.chart("referrals").rows}
    assert rows == {"2026-06-09": [0, 0], "2026-06-10": [1, 0], "2026-06-11": [1, 0], "2026-06-12": [0, 1],
                    "2026-06-13": [0, 0]}
    assert (board.totals["referred"], board.totals["converted"]) == (2, 1)


async def test_the_referrals_chart_downloads_as_csv(db, loyalty):
    await two_friends_one_converted(loyalty)
    await add_operator(db, "mia", PASSWORD, role="operator")
    app = create_app(db, loyalty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        signed = await web.post("/console/signin", data={"name": "mia", "password": PASSWORD, "next": "/console"})
        assert signed.status_code == 303
        page = await web.get("/console?from=2026-06-09&to=2026-06-13")
        assert 'id="c-referrals"' in page.text and "2 friends joined through a referral link" in page.text
        got = await web.get("/console/dashboard/referrals.csv?from=2026-06-10&to=2026-06-12")
    assert list(csv.reader(io.StringIO(got.text))) == [
        ["day", "referred", "converted"], ["2026-06-10", "1", "0"], ["2026-06-11", "1", "0"],
        ["2026-06-12", "0", "1"]]
