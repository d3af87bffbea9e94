"""Campaign offers: a schedule that attaches a reward gives each recipient a free coupon for it.

``params["offer"] = {"reward": "<reward code>", "valid_days": N, "remind_days_before": N}``.

When the coupon is made, and why there. The message shows the coupon's code and expiry, so both are
fixed when the row is *planned* (a fresh random code and ``not_before + valid_days``, kept in the row's
``offer``), but the coupon is *issued* in the dispatcher's hand-over transaction, the one that commits
``sent_at`` just before the row goes to Telegram (loyalty/offers.py). So:

* a row skipped at planning (opted out, no consent, already holds this campaign's coupon: ``offer_taken``)
  or by a frequency cap, delayed, or never handed over, issues no coupon;
* a dispatcher that crashes after the hand-over leaves the row "delivery unknown" with its coupon (the
  member may well have the message); resent (``resend_unknown``), the same row finds the coupon it issued;
* one per member per campaign: the coupon's request id is ``offer:<schedule>:<member>``; re-plans plan
  nothing new (the outbox key), a later period of a recurring campaign skips members who hold its coupon,
  and a row promising a second code is skipped at hand-over (``offer_taken``) rather than sent;
* rows handed over but given back unsent (a graceful stop), or refused by Telegram (blocked, a bad request,
  a 429 or a server error before an answer), have their coupon withdrawn again; a retry issues it anew,
  with the same code and expiry.

The coupon expires when the message says (the planned expiry), costs no points and takes no stock.

Reminders: with ``remind_days_before`` N, an unused offer coupon of the campaign gets one "about to expire"
message (kind coupon_expiry, the shipped template, a reminder not a marketing message) once its expiry is
N days or less away; the scheduler service plans them every few minutes (`plan_offer_reminders`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalbot.chat.callbacks import encode
from loyalbot.chat.i18n import Translator
from loyalbot.loyalty.codes import new_coupon_code
from loyalbot.loyalty.offers import OfferIssue, campaign_coupon_holders, issue_offer_coupons
from loyalbot.loyalty.programme import Programme
from loyalbot.scheduler.caps import WHEN_CAPPED
from loyalbot.scheduler.kinds import survey_of
from loyalbot.scheduler.timing import member_zone
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import Coupon, Outbox, Reward, Schedule
from loyalbot.storage.rows import stored_id

if TYPE_CHECKING:
    from loyalbot.scheduler.planner import Planner, PlanStats

OFFER_TAKEN = "offer_taken"
OFFER_UNAVAILABLE = "offer_unavailable"
MAX_VALID_DAYS = 365


class OfferProblem(ValueError):
    """A schedule's offer cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Offer:
    """A schedule's offer, checked."""

    reward: str
    valid_days: int
    remind_days_before: int | None = None

    def as_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reward": self.reward, "valid_days": self.valid_days}
        if self.remind_days_before:
            out["remind_days_before"] = self.remind_days_before
        return out


def _whole(raw: Any, name: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
        raise OfferProblem(f"offer {name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise OfferProblem(f"offer {name} must be a whole number from {low} to {high}")
    return value


def check_offer(raw: Any, programme: Programme) -> Offer | None:
    """The offer in `raw` (a schedule's params["offer"]), checked against the programme's rewards; None: none."""
    if raw in (None, {}, ""):
        return None
    if not isinstance(raw, dict):
        raise OfferProblem("offer must be an object with reward, valid_days and remind_days_before")
    unknown = sorted(set(raw) - {"reward", "valid_days", "remind_days_before"})
    if unknown:
        raise OfferProblem(f"unknown offer setting {unknown[0]!r}; use reward, valid_days, remind_days_before")
    code = raw.get("reward")
    spec = next((r for r in programme.rewards if r.code == code), None)
    if not isinstance(code, str) or spec is None:
        raise OfferProblem(f"offer reward {str(code)[:64]!r} is not in the reward catalogue")
    if not spec.active:
        raise OfferProblem(f"offer reward {code!r} is not active")
    valid_days = _whole(raw.get("valid_days", 7), "valid_days", 1, MAX_VALID_DAYS)
    remind = raw.get("remind_days_before")
    remind_days = None
    if remind not in (None, "", 0, "0"):
        if valid_days < 2:
            raise OfferProblem("offer remind_days_before needs valid_days of 2 or more")
        remind_days = _whole(remind, "remind_days_before", 1, valid_days - 1)
    return Offer(code, valid_days, remind_days)


def check_campaign_params(schedule: Schedule, programme: Programme, uses_offer: bool) -> dict[str, Any]:
    """The schedule's params with its offer and when_capped checked (the offer in its stored form);
    `uses_offer`: whether its templates show ``offer``. Raises OfferProblem naming what is wrong."""
    params = dict(schedule.params or {})
    offer = check_offer(params.get("offer"), programme)
    if offer is not None and survey_of(schedule) is not None:
        raise OfferProblem(f"a {schedule.kind} schedule that asks a survey cannot carry an offer")
    if offer is None:
        params.pop("offer", None)
        if uses_offer:
            raise OfferProblem("the template shows an offer, but the schedule has none: set offer reward")
    else:
        params["offer"] = offer.as_params()
    if "when_capped" in params and params["when_capped"] not in WHEN_CAPPED:
        raise OfferProblem(f"when_capped is one of {', '.join(WHEN_CAPPED)}")
    return params


def offer_of(schedule: Schedule) -> Offer | None:
    """The schedule's offer as stored (checked when saved), or None."""
    raw = (schedule.params or {}).get("offer")
    if not isinstance(raw, dict) or not isinstance(raw.get("reward"), str):
        return None
    remind = raw.get("remind_days_before")
    return Offer(raw["reward"], int(raw.get("valid_days") or 7), int(remind) if remind else None)


# --- planning ---------------------------------------------------------------------------------------


@dataclass
class OfferBatch:
    """What planning one batch of a campaign needs: the reward, and who already holds the campaign's coupon."""

    offer: Offer
    reward: Any | None  # (id, titles, active) of the reward, None when it is gone
    holders: set[int]
    default_language: str

    def skip_reason(self, member_id: int) -> str | None:
        if self.reward is None or not self.reward.active:
            return OFFER_UNAVAILABLE
        if member_id in self.holders:
            return OFFER_TAKEN
        return None

    def draft(self, member: Any, not_before: datetime) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        """(the template's `offer` variable, the row's stored `offer`, the row's buttons) for one member."""
        assert self.reward is not None
        code = new_coupon_code()
        expires_at = as_utc(not_before) + timedelta(days=self.offer.valid_days)
        titles = self.reward.titles or {}
        title = titles.get(member.language) or titles.get(self.default_language) or self.offer.reward
        local_expiry = expires_at.astimezone(member_zone(member.timezone)).date()
        variable = {"code": code, "title": title, "expires": local_expiry}
        stored = {"code": code, "reward_id": stored_id(self.reward.id), "expires_at": expires_at.isoformat()}
        label = Translator(member.language, timezone=member.timezone).label("offer.button")
        return variable, stored, [[{"text": label[:60], "data": encode("cp", "c", code)}]]

    def line(self, member: Any, variable: dict[str, Any]) -> str:
        """The offer in a sentence, added when the schedule's template does not show the code itself."""
        tr = Translator(member.language, timezone=member.timezone)
        return tr.t("offer.line", title=variable["title"], code=variable["code"], date=variable["expires"])


async def prepare_batch(db: Db, schedule: Schedule, member_ids: Sequence[int], programme: Programme
                        ) -> OfferBatch | None:
    """The offer of a batch of a campaign, or None when the schedule has no offer."""
    offer = offer_of(schedule)
    if offer is None:
        return None
    async with db.read() as s:
        conn = await s.connection()
        reward = (await conn.execute(sa.select(Reward.id, Reward.titles, Reward.active)
                                     .where(Reward.code == offer.reward))).first()
        holders = await campaign_coupon_holders(conn, stored_id(schedule.id), member_ids)
    return OfferBatch(offer, reward, holders, programme.programme.default_language)


# --- handing over -----------------------------------------------------------------------------------


async def issue_for_handover(conn: AsyncConnection, rows: Sequence[Any], now: datetime, *, postgres: bool
                             ) -> set[int]:
    """Issue the coupons the handed-over `rows` promise, in the hand-over's transaction; returns the ids of
    rows that must not be sent (the member holds another coupon of the campaign), skipped here."""
    if not rows:
        return set()
    issues = [OfferIssue(row_id=stored_id(r.id), schedule_id=stored_id(r.schedule_id), member_id=r.member_id,
                         reward_id=int(r.offer["reward_id"]), code=str(r.offer["code"]),
                         expires_at=datetime.fromisoformat(r.offer["expires_at"])) for r in rows]
    issued = await issue_offer_coupons(conn, issues, now, postgres=postgres)
    refused = {row_id for row_id, coupon_id in issued.items() if coupon_id is None}
    linked = [{"rid": row_id, "cid": coupon_id} for row_id, coupon_id in issued.items() if coupon_id is not None]
    if linked:
        await conn.execute(sa.update(Outbox).where(Outbox.id == sa.bindparam("rid"))
                           .values(coupon_id=sa.bindparam("cid")), linked)
    if refused:
        await conn.execute(sa.update(Outbox).where(Outbox.id.in_(refused))
                           .values(status="skipped", skip_reason=OFFER_TAKEN, sent_at=None, claimed_by=None)
                           .execution_options(synchronize_session=False))
    return refused


async def withdraw_unsent(conn: AsyncConnection, row_ids: Sequence[int]) -> None:
    """Rows handed over but given back unsent: their coupons (still unused) are withdrawn again; the row
    issues them anew when it is handed over next time."""
    if not row_ids:
        return
    coupons = [c for (c,) in (await conn.execute(sa.select(Outbox.coupon_id).where(
        Outbox.id.in_(row_ids), Outbox.coupon_id.is_not(None)))).all()]
    if not coupons:
        return
    await conn.execute(sa.update(Outbox).where(Outbox.id.in_(row_ids)).values(coupon_id=None)
                       .execution_options(synchronize_session=False))
    await conn.execute(sa.delete(Coupon).where(Coupon.id.in_(coupons), Coupon.status == "active")
                       .execution_options(synchronize_session=False))


# --- reminders --------------------------------------------------------------------------------------


def reminder_schedule(schedule: Schedule) -> Schedule | None:
    """The offer's reminder as a coupon_expiry schedule of the same id (its rows are the campaign's), over
    the campaign's own coupons only (`offer_coupons_of`), or None when the offer asks for no reminder."""
    offer = offer_of(schedule)
    if offer is None or not offer.remind_days_before:
        return None
    return Schedule(id=schedule.id, name=schedule.name, kind="coupon_expiry", timezone=schedule.timezone,
                    offset_days=offer.remind_days_before, segment={}, templates={}, enabled=True,
                    params={"offer_coupons_of": stored_id(schedule.id)}, member_local_time=False)


async def plan_offer_reminders(planner: Planner, *, now: datetime) -> dict[str, PlanStats]:
    """Plan the "about to expire" reminders of every enabled campaign whose offer asks for one."""
    async with planner.db.read() as s:
        schedules = (await s.execute(sa.select(Schedule).where(Schedule.enabled.is_(True),
                                                               Schedule.archived_at.is_(None)))).scalars().all()
    done: dict[str, PlanStats] = {}
    for schedule in schedules:
        reminder = reminder_schedule(schedule)
        if reminder is not None:
            done[schedule.name] = await planner.run(reminder, now=now)
    return done
