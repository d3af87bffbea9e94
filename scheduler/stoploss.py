"""Stop-loss: a campaign pauses itself when, after N sends, its conversion or redemption stays below a threshold.

A schedule's ``params["stop_loss"] = {"after_sends": N, "metric": "conversion" | "redemption",
"below_pct": P}``. The planner (the replica holding the planner lease) checks every enabled schedule
with a stop-loss once a minute (`SchedulerService`): once at least N of its messages are sent, the
rate so far (scheduler/attribution.py: purchases, or used offer coupons, in each message's window)
is compared with P. Below it, the schedule is paused by the actor ``stop-loss`` through
`editing.pause_for_stop_loss` (audited), its messages not sent yet are skipped (reason ``stop_loss``)
and the staff group is told in an outbox row of the same transaction. A rule fires once: the notice's key names the schedule and the rule, so an operator who
resumes the schedule has overruled it, and it fires again only if they change the rule.

Redemption needs offer coupons linked to the messages (offers11); without the link nothing is judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from loyalbot.chat.i18n import Translator
from loyalbot.loyalty.service import Loyalty
from loyalbot.scheduler import editing
from loyalbot.scheduler.attribution import campaign_results
from loyalbot.storage import as_utc
from loyalbot.storage.models import Schedule
from loyalbot.storage.rows import stored_id

log = logging.getLogger(__name__)

ACTOR = "stop-loss"
CHECK_EVERY = 60.0  # seconds between checks by the planner


@dataclass(frozen=True)
class Verdict:
    """What a schedule's stop-loss found: the sends so far and the rate it judged (None: nothing to judge)."""

    sends: int
    rate: float | None
    stop: bool


async def judge(loyalty: Loyalty, schedule: Schedule) -> Verdict | None:
    """The schedule's stop-loss verdict now, or None when it has no stop-loss rule."""
    rule = (schedule.params or {}).get("stop_loss")
    if not isinstance(rule, dict):
        return None
    results = await campaign_results(loyalty.db, schedule)
    treated = results.treated
    if treated.units < int(rule["after_sends"]):
        return Verdict(treated.units, None, False)
    rate = treated.conversion if rule["metric"] == "conversion" else treated.redemption
    if rate is None or rate.value is None:
        return Verdict(treated.units, None, False)
    return Verdict(treated.units, rate.value, rate.value * 100 < float(rule["below_pct"]))


async def check_stop_losses(loyalty: Loyalty, *, staff_group_id: int | None, now: datetime) -> list[str]:
    """Pause every enabled schedule whose stop-loss says so and tell the staff; returns the names paused."""
    now = as_utc(now)
    async with loyalty.db.read() as s:
        schedules = list((await s.execute(sa.select(Schedule).where(
            Schedule.enabled, Schedule.archived_at.is_(None)).order_by(Schedule.id))).scalars())
    paused = []
    for schedule in schedules:
        if not isinstance((schedule.params or {}).get("stop_loss"), dict):
            continue
        try:
            verdict = await judge(loyalty, schedule)
            if verdict is None or not verdict.stop or verdict.rate is None:
                continue
            rule = schedule.params["stop_loss"]
            text = notice_text(loyalty, schedule.name, rule, verdict.sends, verdict.rate)
            key = f"stop-loss:{stored_id(schedule.id)}:{rule['metric']}:{rule['after_sends']}:{rule['below_pct']}"
            if await editing.pause_for_stop_loss(
                    loyalty, stored_id(schedule.id), actor=ACTOR, notice_key=key[:255], staff_chat_id=staff_group_id,
                    text=text, details={"metric": rule["metric"], "sends": verdict.sends,
                                        "rate": round(verdict.rate, 4), "below_pct": rule["below_pct"]}, now=now):
                log.warning("schedule %s paused by its stop-loss: %s %.1f%% after %d sends", schedule.name,
                            rule["metric"], verdict.rate * 100, verdict.sends)
                paused.append(schedule.name)
        except Exception:  # one schedule's trouble must not keep the others unchecked
            log.exception("stop-loss check of schedule %s failed", schedule.id)
    return paused


def notice_text(loyalty: Loyalty, name: str, rule: dict[str, object], sends: int, rate: float) -> str:
    """The staff group's message, in the programme's default language."""
    t = Translator(loyalty.programme.programme.default_language)
    return t.t("campaign.stop_loss", name=name, sends=sends, metric=t.label(f"campaign.metric.{rule['metric']}"),
               rate=f"{rate * 100:.1f}%", threshold=f"{rule['below_pct']}%")
