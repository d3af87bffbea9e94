"""A campaign's results in Chromium: from the schedule's page to its results, in English and in Chinese."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from loyalbot.scheduler import editing
from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import Operator, Outbox, Schedule
from tests.browser.console_site import OPERATOR, browser_page, console_site, shot, sign_in

pytestmark = pytest.mark.browser
SENT = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)


async def prepare(db, loyalty) -> None:
    for n in range(40):
        await loyalty.register_member(telegram_id=300 + n, first_name=f"M{n}", terms_accepted=True,
                                      marketing_consent=True, now=SENT - timedelta(days=30))
    variants = [{"name": "A", "weight": 1, "templates": {"en": "Spring A, {{ name }}"}},
                {"name": "B", "weight": 1, "templates": {"en": "Spring B, {{ name }}"}}]
    row = await editing.add(loyalty, Schedule(name="Spring", kind="broadcast", one_off_at=SENT,
                                              templates={"en": "Spring, {{ name }}"},
                                              params={"holdout_pct": 20, "variants": variants,
                                                      "stop_loss": {"after_sends": 100, "metric": "conversion",
                                                                    "below_pct": 5}}),
                            actor="test", now=SENT - timedelta(days=1))
    await Planner(loyalty).run(row, now=SENT)
    async with db.transaction() as tx:
        await tx.execute(sa.update(Outbox).where(Outbox.schedule_id == row.id).values(status="sent", sent_at=SENT))
    async with db.read() as s:
        members = list((await s.execute(sa.select(Outbox.member_id).where(Outbox.schedule_id == row.id)
                                        .order_by(Outbox.id))).scalars())
    for member in members[:9]:
        await loyalty.award_purchase(member, external_id=f"p{member}", amount="18.00",
                                     occurred_at=SENT + timedelta(days=2), now=SENT + timedelta(days=2))


async def test_an_operator_reads_a_campaigns_results_in_two_languages(tmp_path, chromium):
    async with console_site(tmp_path, prepare) as site:
        async with browser_page(chromium) as page:
            await sign_in(page, site.base)
            await page.get_by_role("link", name="Schedules").click()
            await page.get_by_role("link", name="Spring").click()
            await page.get_by_role("link", name="Results").click()
            await expect(page.get_by_role("heading", name="Results: Spring")).to_be_visible()
            table = page.get_by_role("table")
            for name in ("Variant A", "Variant B", "All variants", "Control group"):
                await expect(table.get_by_role("rowheader", name=name)).to_be_visible()
            await expect(page.get_by_text("after 100 messages, the rate is below 5%")).to_be_visible()
            await shot(page, "campaign-results")
            db = site.db()
            try:
                async with db.transaction() as tx:
                    await tx.execute(sa.update(Operator).where(Operator.name == OPERATOR[0])
                                     .values(language="zh_Hans"))
            finally:
                await db.dispose()
            await page.reload()
            await expect(page.get_by_role("rowheader", name="对照组")).to_be_visible()
            await expect(page.get_by_role("rowheader", name="版本 A")).to_be_visible()
            await shot(page, "campaign-results-zh_Hans")
            assert page.errors == []  # type: ignore[attr-defined]
