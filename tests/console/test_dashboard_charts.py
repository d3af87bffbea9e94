"""The dashboard's charts: figures that add up per local day of the shop (Europe/Amsterdam), the same from the
rollup as from the tables, ranges refused with a reason, each chart's CSV, and aggregates only."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import create_app
from loyalbot.console.dashboard_stats import MAX_DAYS, PeriodError, build_board, parse_period
from loyalbot.console.pages.home import _csv_safe
from loyalbot.storage import utcnow
from loyalbot.storage.models import DailyStat, HandoffConversation, Outbox

PASSWORD = "correct horse battery"
ZONE = "Europe/Amsterdam"  # the default programme's zone: UTC+2 in June
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


async def add_rows(db, *rows) -> None:
    async with db.transaction() as s:
        s.add_all(rows)


@pytest.fixture
async def june(db, loyalty):
    """Two members, three purchases (one at 23:30 UTC, the next local day), a coupon, answers, deliveries,
    two closed support conversations; returns the points each purchase earned."""
    ann = await loyalty.register_member(telegram_id=1, first_name="Ann", phone="+31600000001", terms_accepted=True,
                                        now=at(10, 8))
    ben = await loyalty.register_member(telegram_id=2, first_name="Ben", terms_accepted=True, now=at(12, 8))
    late = await loyalty.award_purchase(ann.id, external_id="p1", amount="400", occurred_at=at(12, 23, 30),
                                        now=at(12, 23, 30))
    again = await loyalty.award_purchase(ann.id, external_id="p2", amount="20", occurred_at=at(13, 9), now=at(13, 9))
    ben_buys = await loyalty.award_purchase(ben.id, external_id="p3", amount="30", occurred_at=at(14, 9),
                                            now=at(14, 9))
    coffee = next(i.reward for i in await loyalty.catalogue(ann.id, now=at(14, 10)) if i.reward.code == "coffee")
    redeemed = await loyalty.redeem_reward(ann.id, coffee.id, request_id="r1", now=at(14, 10))
    csat = await loyalty.open_survey(ben.id, "csat", trigger="coupon", now=at(14, 11))
    await loyalty.record_survey_answer(ben.id, csat.id, 5, now=at(14, 11))
    nps = await loyalty.open_survey(ann.id, "nps", trigger="coupon", now=at(14, 11))
    await loyalty.record_survey_answer(ann.id, nps.id, 6, now=at(14, 12))
    await add_rows(db, *(Outbox(idempotency_key=f"test:{n}", member_id=ann.id, chat_id=1, kind="care", period="x",
                                text="Hello Ann", status=status, skip_reason=reason, created_at=at(13, 10))
                         for n, (status, reason) in enumerate([("sent", None), ("sent", None),
                                                               ("skipped", "=quiet_hours"), ("failed", None)])))
    await add_rows(db, HandoffConversation(member_id=ann.id, state="closed", opened_at=at(14, 8),
                                           closed_at=at(14, 9), first_response_seconds=120, resolution_seconds=600),
                   HandoffConversation(member_id=ben.id, state="closed", opened_at=at(14, 8),
                                       closed_at=at(14, 10), first_response_seconds=360, resolution_seconds=1800))
    return {"late": late.points, "again": again.points, "ben": ben_buys.points,
            "redeemed": redeemed.coupon.points_spent}


def rows_of(board, key):
    return {row[0]: row[1:] for row in board.chart(key).rows}


async def test_the_figures_add_up_by_the_shops_local_day(db, loyalty, june):
    period = parse_period(None, None, "7", zone=ZONE, now=NOW)
    assert (period.first, period.last, period.unit) == (date(2026, 6, 9), date(2026, 6, 15), "day")
    board = await build_board(db, period, now=NOW)
    members = rows_of(board, "members")
    assert members[date(2026, 6, 10)][0] == 1 and members[date(2026, 6, 12)][0] == 1
    assert board.totals["members"] == 2 and board.totals["joined"] == 2 and board.totals["active"] == 2
    points = rows_of(board, "points")
    assert points[date(2026, 6, 12)][0] == 0  # 23:30 UTC on the 12th is 01:30 on the 13th in Amsterdam
    assert points[date(2026, 6, 13)][0] == june["late"] + june["again"]
    assert points[date(2026, 6, 14)][:2] == [june["ben"], june["redeemed"]]
    outstanding = june["late"] + june["again"] + june["ben"] - june["redeemed"]
    assert points[date(2026, 6, 15)][3] == outstanding == board.totals["outstanding"]
    assert points[date(2026, 6, 13)][3] == june["late"] + june["again"]
    assert points[date(2026, 6, 11)][3] == 0
    repeat = rows_of(board, "repeat")
    assert repeat[date(2026, 6, 13)] == [100.0, 1, 1, 2]  # both of Ann's purchases fall on the local 13th
    assert (board.totals["purchasers"], board.totals["repeaters"], board.totals["repeat_rate"]) == (2, 1, 50.0)
    redemption = rows_of(board, "redemption")
    assert redemption[date(2026, 6, 14)][1:] == [1, 0]
    satisfaction = rows_of(board, "satisfaction")
    assert satisfaction[date(2026, 6, 14)] == [100.0, 1, -100.0, 1]
    deliveries = board.chart("deliveries")
    statuses = [c.key for c in deliveries.columns]
    row = rows_of(board, "deliveries")[date(2026, 6, 13)]
    assert dict(zip(statuses, row, strict=True))["sent"] == 2 and dict(zip(statuses, row, strict=True))["failed"] == 1
    assert board.chart("skips").rows == [["=quiet_hours", 1]]
    support = rows_of(board, "support")
    assert support[date(2026, 6, 14)] == [4.0, 20.0, 2]  # medians of 2 and 6 minutes, 10 and 30 minutes
    # The same figures again, now read from the rollup of the completed days.
    async with db.read() as s:
        kept = (await s.execute(sa.select(sa.func.count()).select_from(DailyStat).where(
            DailyStat.metric == "_done_day"))).scalar_one()
    assert kept == 6  # the 9th to the 14th; the 15th (today) is live
    again = await build_board(db, period, now=NOW)
    assert [c.rows for c in again.charts] == [c.rows for c in board.charts]


async def test_long_ranges_are_in_weeks_and_agree_with_the_days(db, loyalty, june):
    period = parse_period("2026-05-01", "2026-06-15", None, zone=ZONE, now=NOW)
    assert period.unit == "day"
    year = parse_period(None, None, "365", zone=ZONE, now=NOW)
    assert year.unit == "week" and year.first.weekday() == 0 and year.last.weekday() == 6
    board = await build_board(db, year, now=NOW)
    week = rows_of(board, "repeat")[date(2026, 6, 8)]  # the week of the 8th to the 14th
    assert week[1:] == [2, 1, 3]
    assert rows_of(board, "members")[date(2026, 6, 8)] == [2, 2]
    assert board.totals["issued"] == june["late"] + june["again"] + june["ben"]


async def test_a_late_change_to_a_recent_day_shows_within_the_hour(db, loyalty, june):
    period = parse_period(None, None, "7", zone=ZONE, now=NOW)
    await build_board(db, period, now=NOW)
    async with db.read() as s:
        ann = (await s.execute(sa.text("SELECT id FROM members WHERE telegram_id = 1"))).scalar_one()
    await loyalty.award_purchase(ann, external_id="p-late", amount="10", occurred_at=at(11, 9), now=NOW)
    same = await build_board(db, period, now=NOW)
    assert rows_of(same, "repeat")[date(2026, 6, 11)][1] == 0  # the 11th is kept as computed for an hour
    later = await build_board(db, period, now=NOW + timedelta(hours=1, minutes=1))
    assert rows_of(later, "repeat")[date(2026, 6, 11)][1] == 1


@pytest.mark.parametrize("start,end,days,field", [
    ("2026-06-10", "2026-06-01", None, "to"),
    ("2020-01-01", "2026-06-15", None, "from"),
    ("yesterday", None, None, "from"),
    ("2026-02-30", None, None, "from"),
    (None, "2026-07-01", None, "to"),
    ("1999-12-31", "2000-01-05", None, "from"),
    (None, None, "0", "days"),
    (None, None, "-7", "days"),
    (None, None, str(MAX_DAYS + 1), "days"),
])
def test_bad_ranges_are_refused_naming_the_field(start, end, days, field):
    with pytest.raises(PeriodError) as refused:
        parse_period(start, end, days, zone=ZONE, now=NOW)
    assert refused.value.field == field


def test_csv_cells_never_start_a_formula():
    assert [_csv_safe(v) for v in ("=HYPERLINK(1)", "+1+1", "-x", "@sum", "\tx", "-12", "plain", -5, 2.5, None)] == [
        "'=HYPERLINK(1)", "'+1+1", "'-x", "'@sum", "'\tx", "-12", "plain", -5, 2.5, ""]


@pytest.fixture
async def web(db, loyalty, june):
    await add_operator(db, "mia", PASSWORD, role="operator")
    app = create_app(db, loyalty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        yield client


async def sign_in(web: httpx.AsyncClient) -> None:
    signed = await web.post("/console/signin", data={"name": "mia", "password": PASSWORD, "next": "/console"})
    assert signed.status_code == 303


async def test_the_page_shows_every_chart_with_its_numbers_and_no_personal_data(web):
    assert (await web.get("/console/dashboard/points.csv")).status_code == 303  # signed out: to sign-in
    await sign_in(web)
    page = await web.get("/console?days=30")
    assert page.status_code == 200
    for key in ("members", "tiers", "points", "redemption", "repeat", "deliveries", "skips", "satisfaction",
                "support"):
        assert f'id="c-{key}"' in page.text and f'<script type="application/json" id="d-{key}">' in page.text
        assert f'href="/console/dashboard/{key}.csv?from=' in page.text
    assert "2 members now" in page.text and "Repeat-purchase rate" in page.text
    assert "<script>" not in page.text and "onclick" not in page.text
    for personal in ("Ann", "Ben", "+31600000001", "Hello"):
        assert personal not in page.text


async def test_a_bad_range_is_refused_in_place_in_the_operators_language(web, db):
    await sign_in(web)
    backwards = await web.get("/console?from=2026-06-10&to=2026-06-01")
    assert backwards.status_code == 400
    assert re.search(r'<p class="field-error" id="range-to-error">The end comes before the start.</p>', backwards.text)
    assert 'aria-describedby="range-to-error"' in backwards.text and 'id="c-members"' not in backwards.text
    hostile = await web.get("/console", params={"from": "2026-06-01\x00", "to": "x" * 5000})
    assert hostile.status_code == 400 and "YYYY-MM-DD" in hostile.text and "x" * 100 not in hostile.text
    too_long = await web.get("/console?from=2020-01-01&to=2026-01-01")
    assert too_long.status_code == 400 and "Choose at most 1,098 days." in too_long.text
    async with db.read() as s:  # a refused range computed nothing
        assert (await s.execute(sa.select(sa.func.count()).select_from(DailyStat))).scalar_one() == 0
    page = await web.get("/console")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    await web.post("/console/language", data={"language": "zh_Hant", "csrf": csrf, "next": "/console"})
    chinese = await web.get("/console?from=2026-06-10&to=2026-06-01")
    assert chinese.status_code == 400 and "結束日期早於開始日期。" in chinese.text


async def test_each_chart_downloads_as_csv_of_aggregates(web):
    await sign_in(web)
    today = utcnow().date()
    got = await web.get("/console/dashboard/support.csv?days=7")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert re.fullmatch(r'attachment; filename="loyalbot-support-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv"',
                        got.headers["content-disposition"])
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["day", "first_response_min", "resolution_min", "closed"] and len(rows) == 8
    assert abs((date.fromisoformat(rows[-1][0]) - today).days) <= 1
    skips = await web.get("/console/dashboard/skips.csv?from=2026-06-01&to=2026-06-15")
    assert list(csv.reader(io.StringIO(skips.text))) == [["reason", "skipped"], ["'=quiet_hours", "1"]]
    points = list(csv.reader(io.StringIO((await web.get("/console/dashboard/points.csv?from=2026-06-12&to=2026-06-14"
                                                        )).text)))
    assert points[0] == ["day", "issued", "redeemed", "expired", "outstanding"]
    assert [r[0] for r in points[1:]] == ["2026-06-12", "2026-06-13", "2026-06-14"] and points[1][1] == "0"
    for text in (got.text, skips.text):
        assert "Ann" not in text and "+316" not in text
    unknown = await web.get("/console/dashboard/members-names.csv")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_chart"
    bad = await web.get("/console/dashboard/points.csv?from=2026-06-10&to=2026-06-01")
    assert bad.status_code == 400 and set(bad.json()) == {"error", "detail"}


def test_distinct_members_over_a_range_count_each_member_once():
    from loyalbot.console.dashboard_stats import _distinct, _ids, pack

    days = {"active": [_ids(pack({1, 2, 3})), _ids(pack({3, 4}))],
            # 5 buys on two days, 6 twice on one day, 7 once: two repeat buyers of three
            "buyers": [_ids(pack({5, 6, 7})), _ids(pack({5}))],
            "buyers2": [_ids(pack({6}))]}
    assert _distinct(days) == {"active": 4, "purchasers": 3, "repeaters": 2}
    assert _distinct({"active": [], "buyers": [], "buyers2": []}) == {"active": 0, "purchasers": 0, "repeaters": 0}


async def test_the_csvs_downloaded_from_a_page_reuse_its_figures_and_a_new_page_builds_afresh(web, monkeypatch):
    from loyalbot.console.pages import home

    builds = []
    real = home.build_board

    async def counted(*args, **kwargs):
        builds.append(args[1])
        return await real(*args, **kwargs)

    monkeypatch.setattr(home, "build_board", counted)
    await sign_in(web)
    assert (await web.get("/console?days=7")).status_code == 200
    for key in ("members", "points", "support"):
        assert (await web.get(f"/console/dashboard/{key}.csv?days=7")).status_code == 200
    assert len(builds) == 1
    assert (await web.get("/console/dashboard/points.csv?days=30")).status_code == 200  # another range: built
    assert (await web.get("/console?days=7")).status_code == 200  # a page is always fresh
    assert len(builds) == 3
