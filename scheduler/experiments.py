"""Campaign experiments: a control group kept back and A/B template variants, assigned per member.

A schedule's `params` may carry (all optional):

* ``holdout_pct``: 0-50, the share of the eligible audience kept back as the control group. Control
  members get a `campaign_holdouts` row (with the run's period, so a recurring schedule's control is
  per run) and no outbox row, so their purchases can be compared with those of the members who got
  the message (scheduler/attribution.py).
* ``variants``: 2-4 of ``{"name": "A", "weight": 1, "templates": {"en": ..., "zh_Hans": ...}}``; the
  rest of the audience is split across them by weight and each outbox row records the variant it was
  rendered from. Without it the schedule's own templates are the single variant (recorded as none).
* ``window_days`` (attribution window, 1-90, default 7) and ``stop_loss`` are read by
  scheduler/attribution.py and scheduler/stoploss.py; they are checked here with the rest.

Assignment is deterministic: blake2b of ``"<schedule>:<member>:<salt>"`` read as a number in [0, 1).
The holdout and the variant use different salts, so they are independent, and a member's draw depends
on nothing but the schedule and the member: the same across runs, replicas and restarts, and unchanged
when other members join or leave the audience.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalbot.scheduler.kinds import survey_of
from loyalbot.scheduler.templates import CompiledTemplates, TemplateBook, TemplateProblem
from loyalbot.storage import Db
from loyalbot.storage.models import CampaignHoldout, Schedule

EXPERIMENT_PARAMS = ("holdout_pct", "variants", "window_days", "stop_loss")
MAX_HOLDOUT_PCT = 50
VARIANTS_MIN, VARIANTS_MAX = 2, 4
VARIANT_NAME_LIMIT = 16
DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 90
STOP_LOSS_METRICS = ("conversion", "redemption")
CONTROL = "control"  # the name the control group goes by in results; not a variant name


class ExperimentProblem(ValueError):
    """A campaign's holdout, variants, window or stop-loss cannot be used; says which key and why."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def draw(schedule_id: int, member_id: int, salt: str) -> float:
    """A member's fixed number in [0, 1) for this schedule and purpose (`salt`)."""
    digest = hashlib.blake2b(f"{schedule_id}:{member_id}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_experiment(schedule: Schedule, book: TemplateBook, *, template_kind: str, default_language: str) -> None:
    """Raise ExperimentProblem when a schedule's experiment parameters are wrong in shape or value.

    Variant templates go through the same sandbox checks as the schedule's own (documented variables
    only, must render, the programme's default language present).
    """
    params = schedule.params or {}
    if not any(key in params for key in EXPERIMENT_PARAMS):
        return
    if survey_of(schedule) is not None:
        raise ExperimentProblem("surveys take no holdout, variants or stop-loss", "params")
    if "holdout_pct" in params:
        pct = params["holdout_pct"]
        if not _number(pct) or not 0 <= pct <= MAX_HOLDOUT_PCT:
            raise ExperimentProblem(f"holdout_pct is a number from 0 to {MAX_HOLDOUT_PCT}", "holdout_pct")
    if "variants" in params:
        _check_variants(params["variants"], book, template_kind, default_language)
    if "window_days" in params:
        days = params["window_days"]
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_WINDOW_DAYS:
            raise ExperimentProblem(f"window_days is a whole number of days from 1 to {MAX_WINDOW_DAYS}",
                                    "window_days")
    if "stop_loss" in params:
        _check_stop_loss(params["stop_loss"])


def _check_variants(variants: Any, book: TemplateBook, kind: str, default_language: str) -> None:
    if not isinstance(variants, list) or not VARIANTS_MIN <= len(variants) <= VARIANTS_MAX:
        raise ExperimentProblem(f"variants is a list of {VARIANTS_MIN} to {VARIANTS_MAX} variants", "variants")
    names: set[str] = set()
    for variant in variants:
        if not isinstance(variant, dict) or set(variant) - {"name", "weight", "templates"}:
            raise ExperimentProblem('a variant is {"name": ..., "weight": ..., "templates": {...}}', "variants")
        name = variant.get("name")
        if (not isinstance(name, str) or not name.strip() or len(name) > VARIANT_NAME_LIMIT
                or name == CONTROL or any(ord(c) < 32 for c in name)):
            raise ExperimentProblem(f"a variant's name is 1 to {VARIANT_NAME_LIMIT} characters and not "
                                    f"{CONTROL!r}", "variants")
        if name in names:
            raise ExperimentProblem(f"two variants are called {name!r}", "variants")
        names.add(name)
        weight = variant.get("weight", 1)
        if not _number(weight) or weight <= 0:
            raise ExperimentProblem(f"variant {name}: the weight is a number above 0", "variants")
        templates = variant.get("templates")
        if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
            raise ExperimentProblem(f"variant {name}: templates is an object of language -> template", "variants")
        try:
            book.check_all(templates, kind, default_language=default_language)
        except TemplateProblem as exc:
            raise ExperimentProblem(f"variant {name}: {exc}", "variants") from None


def _check_stop_loss(rule: Any) -> None:
    shape = 'stop_loss is {"after_sends": N, "metric": "conversion" or "redemption", "below_pct": P}'
    if not isinstance(rule, dict) or set(rule) != {"after_sends", "metric", "below_pct"}:
        raise ExperimentProblem(shape, "stop_loss")
    sends, metric, pct = rule["after_sends"], rule["metric"], rule["below_pct"]
    if not isinstance(sends, int) or isinstance(sends, bool) or sends < 1:
        raise ExperimentProblem("stop_loss after_sends is a whole number of sends, at least 1", "stop_loss")
    if metric not in STOP_LOSS_METRICS:
        raise ExperimentProblem(f"stop_loss metric is one of {', '.join(STOP_LOSS_METRICS)}", "stop_loss")
    if not _number(pct) or not 0 < pct <= 100:
        raise ExperimentProblem("stop_loss below_pct is a percentage above 0, at most 100", "stop_loss")


def window_days(schedule: Schedule) -> int:
    """The schedule's attribution window in days."""
    return int((schedule.params or {}).get("window_days", DEFAULT_WINDOW_DAYS))


@dataclass(frozen=True)
class Variant:
    name: str
    templates: CompiledTemplates


class Experiment:
    """One run's assignment of members: control, or which variant (with its compiled templates)."""

    def __init__(self, schedule_id: int, holdout_pct: float, variants: list[Variant], weights: list[float]) -> None:
        self.schedule_id = schedule_id
        self.holdout = holdout_pct / 100
        self.variants = variants
        total = sum(weights)
        self._bounds = [w / total for w in accumulate(weights)][:-1]  # the last variant takes the rest

    @classmethod
    def of(cls, schedule: Schedule, schedule_id: int, book: TemplateBook, *, template_kind: str,
           default_language: str) -> Experiment | None:
        """The schedule's experiment, or None when it keeps no control group and has no variants."""
        params = schedule.params or {}
        pct = float(params.get("holdout_pct") or 0)
        given = params.get("variants") or []
        if not pct and not given:
            return None
        variants = [Variant(str(v["name"]), book.compiled(v["templates"], kind=template_kind,
                                                          default_language=default_language)) for v in given]
        return cls(schedule_id, pct, variants, [float(v.get("weight", 1)) for v in given])

    def held_out(self, member_id: int) -> bool:
        """Whether this member is in the control group."""
        return self.holdout > 0 and draw(self.schedule_id, member_id, "holdout") < self.holdout

    def variant(self, member_id: int) -> Variant | None:
        """The variant this member gets (None: the schedule has only its own templates)."""
        if not self.variants:
            return None
        return self.variants[bisect_right(self._bounds, draw(self.schedule_id, member_id, "variant"))]


def held_out_since(schedule_id: int, member_id: Any, since: datetime) -> Any:
    """SQL: the member was held out of this campaign after `since` (a frequency cap counts it as reached,
    so the control group is capped like the members who got the message)."""
    return sa.exists().where(CampaignHoldout.schedule_id == schedule_id, CampaignHoldout.member_id == member_id,
                             CampaignHoldout.assigned_at > since)


async def record_holdouts(db: Db, rows: list[dict[str, Any]]) -> int:
    """Record planned rows of control members in `campaign_holdouts` (a (schedule, member, period) already
    there is left alone); returns how many were new."""
    values = [{"schedule_id": r["schedule_id"], "member_id": r["member_id"], "period": r["period"],
               "assigned_at": r["created_at"]} for r in rows]
    insert = pg_insert if db.is_postgres else sqlite_insert
    stmt = insert(CampaignHoldout).on_conflict_do_nothing().returning(CampaignHoldout.id)
    async with db.connection() as conn:
        result = await conn.execute(stmt, values)
        return len(result.all())
