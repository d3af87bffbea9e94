"""Scoring members: RFM quintiles and lifecycle stages, computed in the database, nightly and on demand.

One run is one transaction of a few statements, whatever the number of members:

1. the scores of every member (not erased) into a temporary table: their purchases and net spend in the window
   (`[lifecycle] window_days`), ranked with ``rank() OVER (ORDER BY ...)``, and the rank turned into a quintile
   ``1 + 5 * (rank - 1) / members``. `rank` gives tied members the same rank, so ties share a score (NTILE would
   split them across two), and members who never bought all share the lowest R, F and M. R ranks the last purchase
   (the more recent, the higher); F the purchases; M the spend. The stage is `lifecycle.stage_case`;
2. every member whose stage differs from the last run's into `member_stage_changes` (first scores are not a
   change: nobody moved);
3. the scores into `member_scores` (an upsert on member_id that leaves a row whose figures did not change alone, so
   its `computed_at` says when they last changed), and members no longer scored (erased) out of it; on PostgreSQL
   the table is analysed, so that segment counts are planned on today's figures. With the scores go each member's
   net spend and purchases over SCORE_WINDOWS (30, 90, 180, 365 days) as of the run, and the `purchase_changes`
   rows whose version the first statement read are deleted: those members' windows are now stored
   (scheduler/segments.py counts a window from them);
4. the run itself into the audit log (action ``campaign.score``, with its counts): when members were last scored.

Run twice at the same moment, the second run finds no change, so a change is recorded once. On PostgreSQL a run
holds a transaction-scoped advisory lock, so the nightly job and `loyalbot campaign score` never interleave.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalbot.loyalty.programme import Lifecycle
from loyalbot.scheduler.lifecycle import plan_stage_changes, stage_case
from loyalbot.scheduler.planner import Planner, PlanStats
from loyalbot.scheduler.segments import SCORED, last_scored
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import (
    SCORE_WINDOWS,
    AuditLog,
    Member,
    MemberScore,
    MemberStageChange,
    Purchase,
    PurchaseChange,
)
from loyalbot.storage.rows import table_of

SCORING_LOCK = 0x6C6F7961  # pg_advisory_xact_lock key of a scoring run ("loya")
_WINDOW_FIGURES = tuple(f"{what}_{days}d" for days in SCORE_WINDOWS for what in ("spend", "purchases"))
_RUN = sa.table("scoring_run", *(sa.column(name) for name in
                                 ("member_id", "r", "f", "m", "lifecycle", "spend", "purchases", *_WINDOW_FIGURES,
                                  "changes")))


@dataclass
class ScoreRun:
    """What a scoring run did: members scored, and how many moved to each stage (at `at`)."""

    at: datetime
    scored: int = 0
    moved_to: Counter[str] = field(default_factory=Counter)

    @property
    def changes(self) -> int:
        return sum(self.moved_to.values())


def _scored(rules: Lifecycle, now: datetime) -> sa.Select[tuple[object, ...]]:
    """Every member's scores and stage at `now`, as one SELECT (see the module's docstring)."""
    net = Purchase.amount - Purchase.refunded_amount

    def over(days: int) -> tuple[sa.ColumnElement[object], sa.ColumnElement[object]]:
        inside = Purchase.occurred_at > now - timedelta(days=days)
        return (sa.func.sum(sa.case((inside, net), else_=0)), sa.func.sum(sa.case((inside, 1), else_=0)))

    # One pass over the purchases of the longest window: the programme's and each stored one (fully refunded
    # purchases add nothing to a spend and are no purchase, so they are left out of both)
    figures = [(f"{what}_{days}d", figure) for days in SCORE_WINDOWS
               for what, figure in zip(("spend", "purchases"), over(days), strict=True)]
    spend_in, purchases_in = over(rules.window_days)
    window = (sa.select(Purchase.member_id, purchases_in.label("purchases"), spend_in.label("spend"),
                        *(figure.label(name) for name, figure in figures))
              .where(Purchase.occurred_at > now - timedelta(days=max(rules.window_days, *SCORE_WINDOWS)),
                     Purchase.occurred_at <= now, Purchase.amount > Purchase.refunded_amount)
              .group_by(Purchase.member_id).subquery("window_purchases"))
    purchases = sa.func.coalesce(window.c.purchases, 0)
    spend = sa.func.coalesce(window.c.spend, 0)
    base = (sa.select(Member.id.label("member_id"), Member.joined_at, Member.last_purchase_at,
                      purchases.label("purchases"), spend.label("spend"),
                      *(sa.func.coalesce(window.c[name], 0).label(name) for name, _ in figures),
                      PurchaseChange.version.label("changes"),
                      sa.func.count().over().label("n"),
                      sa.func.rank().over(order_by=Member.last_purchase_at.asc().nulls_first()).label("r_rank"),
                      sa.func.rank().over(order_by=purchases).label("f_rank"),
                      sa.func.rank().over(order_by=spend).label("m_rank"))
            .outerjoin(window, window.c.member_id == Member.id)
            .outerjoin(PurchaseChange, PurchaseChange.member_id == Member.id)
            .where(Member.status != "erased").subquery("ranked"))

    def quintile(rank: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
        return 1 + (5 * (rank - 1)) // base.c.n  # integer division on both back-ends

    stage = stage_case(rules, now, joined_at=base.c.joined_at, last_purchase_at=base.c.last_purchase_at,
                       purchases=base.c.purchases)
    return sa.select(base.c.member_id, quintile(base.c.r_rank), quintile(base.c.f_rank), quintile(base.c.m_rank),
                     stage, base.c.spend, base.c.purchases, *(base.c[name] for name in _WINDOW_FIGURES),
                     base.c.changes)


async def score_members(db: Db, rules: Lifecycle, now: datetime, *, actor: str = "scheduler") -> ScoreRun:
    """Score every member at `now`, record who changed stage, keep the scores; one transaction."""
    now = as_utc(now)
    run = ScoreRun(at=now)
    scores = table_of(MemberScore)
    temporary = "ON COMMIT DROP" if db.is_postgres else ""
    async with db.transaction() as tx:
        if db.is_postgres:
            await tx.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCORING_LOCK})
            await tx.execute(sa.text("SET LOCAL work_mem = '64MB'"))  # the three rankings' sorts in memory
        else:
            await tx.execute(sa.text("DROP TABLE IF EXISTS temp.scoring_run"))
        await tx.execute(sa.text(
            "CREATE TEMPORARY TABLE scoring_run (member_id integer PRIMARY KEY, r smallint, f smallint, m smallint,"
            " lifecycle varchar(16), spend numeric(14, 2), purchases integer, "
            + "".join(f"{name} {'numeric(14, 2)' if name.startswith('spend') else 'integer'}, "
                      for name in _WINDOW_FIGURES)
            + f"changes bigint) {temporary}"))
        await tx.execute(sa.insert(_RUN).from_select(list(_RUN.c.keys()), _scored(rules, now)))
        run.scored = int((await tx.execute(sa.select(sa.func.count()).select_from(_RUN))).scalar_one())
        moved = (sa.select(_RUN.c.member_id, scores.c.lifecycle, _RUN.c.lifecycle, sa.literal(now, Member.joined_at.type))
                 .join(scores, scores.c.member_id == _RUN.c.member_id)
                 .where(scores.c.lifecycle != _RUN.c.lifecycle))
        counts = await tx.execute(sa.select(_RUN.c.lifecycle, sa.func.count())
                                  .join(scores, scores.c.member_id == _RUN.c.member_id)
                                  .where(scores.c.lifecycle != _RUN.c.lifecycle).group_by(_RUN.c.lifecycle))
        run.moved_to.update({stage: int(n) for stage, n in counts.all()})
        if run.moved_to:
            await tx.execute(sa.insert(MemberStageChange).from_select(["member_id", "from_stage", "to_stage", "at"],
                                                                      moved))
        await tx.execute(_upsert(db, now))
        await tx.execute(sa.delete(scores).where(~scores.c.member_id.in_(sa.select(_RUN.c.member_id))))
        # The stored windows now hold these members' purchases as the run read them; a purchase written since
        # (a higher version) keeps its member's row, and their windows are summed until the next run
        changes = table_of(PurchaseChange)
        await tx.execute(sa.delete(changes).where(sa.exists().where(
            _RUN.c.member_id == changes.c.member_id, _RUN.c.changes == changes.c.version)))
        tx.add(AuditLog(actor=actor[:64], action=SCORED, created_at=now,
                        details={"scored": run.scored, "moved_to": dict(run.moved_to)}))
        if db.is_postgres:  # the planner's statistics of the new scores, or segment counts plan for the old ones
            await tx.execute(sa.text("ANALYZE member_scores"))
            await tx.execute(sa.text("ANALYZE purchase_changes"))  # emptied: counts plan for a small set
        else:
            await tx.execute(sa.text("DROP TABLE temp.scoring_run"))
    return run


def _upsert(db: Db, now: datetime) -> sa.Insert:
    """The run's scores into member_scores, replacing each member's previous ones."""
    columns = ["member_id", "r", "f", "m", "lifecycle", "spend", "purchases", *_WINDOW_FIGURES, "last_purchase_at",
               "computed_at"]
    source = (sa.select(_RUN.c.member_id, _RUN.c.r, _RUN.c.f, _RUN.c.m, _RUN.c.lifecycle, _RUN.c.spend,
                        _RUN.c.purchases, *(_RUN.c[name] for name in _WINDOW_FIGURES), Member.last_purchase_at,
                        sa.literal(now, Member.joined_at.type))
              .join(Member, Member.id == _RUN.c.member_id)
              .where(sa.true()))  # SQLite needs a WHERE before ON CONFLICT to tell it from a join's ON
    insert = (pg_insert if db.is_postgres else sqlite_insert)(MemberScore).from_select(columns, source)
    scores = table_of(MemberScore)
    figures = [name for name in columns if name not in ("member_id", "computed_at")]
    return insert.on_conflict_do_update(
        index_elements=["member_id"],
        set_={name: insert.excluded[name] for name in columns if name != "member_id"},
        # most members' figures are the same as last night's: leaving those rows alone halves a run at scale
        where=sa.or_(*(scores.c[name].is_distinct_from(insert.excluded[name]) for name in figures)))


async def score_and_plan(planner: Planner, now: datetime, *, actor: str = "scheduler"
                         ) -> tuple[ScoreRun, list[PlanStats]]:
    """Score every member with the programme's thresholds, then plan the lifecycle_change schedules for those who
    moved: what the nightly job, `loyalbot campaign score` and the console's button do."""
    run = await score_members(planner.db, planner.programme.lifecycle, now, actor=actor)
    planned = await plan_stage_changes(planner, run.at, now=now) if run.changes else []
    return run, planned


__all__ = ["SCORED", "SCORING_LOCK", "ScoreRun", "last_scored", "score_and_plan", "score_members"]
