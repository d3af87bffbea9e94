"""Built-in plays install once and disabled; saved segments are checked, reused and protected while in use;
`loyalbot campaign` runs them from the command line."""

from __future__ import annotations

import json

import sqlalchemy as sa
from typer.testing import CliRunner

from loyalbot.bot.cli import app
from loyalbot.loyalty.programme import load_programme
from loyalbot.scheduler.plays import PLAYS, check_plays, install_plays
from loyalbot.scheduler.saved_segments import delete_segment, save_segment
from loyalbot.scheduler.segments import SegmentProblem, segment_size
from loyalbot.storage import Db
from loyalbot.storage.models import Schedule
from tests.campaigns.conftest import NOW, World


async def schedules(db: Db) -> dict[str, Schedule]:
    async with db.read() as s:
        return {row.name: row for row in (await s.execute(sa.select(Schedule))).scalars()}


def test_every_play_has_valid_templates_in_three_languages_and_a_valid_segment() -> None:
    check_plays(load_programme())
    assert all(set(play.templates) == {"en", "zh_Hans", "zh_Hant"} for play in PLAYS)
    kinds = {play.kind for play in PLAYS}
    assert {"birthday", "winback", "lifecycle_change", "coupon_expiry", "points_expiry", "anniversary",
            "broadcast"} <= kinds


async def test_plays_install_disabled_and_a_repeat_changes_nothing(db: Db) -> None:
    programme = load_programme()
    first = await install_plays(db, programme, actor="test", now=NOW)
    installed = await schedules(db)
    assert sorted(first.added) == sorted(p.name for p in PLAYS) and first.present == []
    assert not any(row.enabled for row in installed.values())
    assert installed["play-winback-90"].params["offer"]["reward"] == "coffee"
    assert installed["play-high-value-dormant"].params["to"] == "dormant"

    # an operator enables and edits one; installing again leaves it (and the others) as they are
    async with db.transaction() as tx:
        await tx.execute(sa.update(Schedule).where(Schedule.name == "play-birthday")
                         .values(enabled=True, templates={"en": "Mine"}))
    second = await install_plays(db, programme, actor="test", now=NOW)
    after = await schedules(db)
    assert second.added == [] and len(second.present) == len(PLAYS)
    assert len(after) == len(installed)
    assert after["play-birthday"].enabled and after["play-birthday"].templates == {"en": "Mine"}


async def test_a_play_whose_reward_the_programme_lacks_is_reported(db: Db) -> None:
    programme = load_programme()
    programme = programme.model_copy(update={"rewards": tuple(r for r in programme.rewards if r.code != "tote")})
    done = await install_plays(db, programme, actor="test", now=NOW)
    assert done.missing_rewards == {"play-high-value-dormant": "tote"}


async def test_saved_segments_refuse_cycles_bad_names_and_deletes_in_use(db: Db, world: World) -> None:
    await world.member(tier="gold")
    await save_segment(db, "gold", {"tiers": ["gold"]}, actor="op", now=NOW)
    await save_segment(db, "wide", {"any": [{"segment": "gold"}, {"tiers": ["silver"]}]}, actor="op", now=NOW)
    try:
        await save_segment(db, "gold", {"not": {"segment": "wide"}}, actor="op", now=NOW)
    except SegmentProblem as exc:
        assert "'gold' uses itself (gold -> wide -> gold)" in str(exc)
    else:
        raise AssertionError("a cycle was saved")
    for name, definition, message in (("Bad Name", {}, "lower-case letters"),
                                      ("x", {"segment": "missing"}, "no saved segment called 'missing'"),
                                      ("y", {"lifecycle": ["asleep"]}, "'asleep' is not one of")):
        try:
            await save_segment(db, name, definition, actor="op", now=NOW)
        except SegmentProblem as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{name} was saved")
    assert await segment_size(db, {"segment": "gold"}, NOW) == 1  # unchanged by the refused save

    async with db.transaction() as tx:
        tx.add(Schedule(name="news", kind="broadcast", daily_time="10:00", segment={"segment": "wide"}))
    for name, user in (("gold", "segment 'wide'"), ("wide", "schedule 'news'")):
        try:
            await delete_segment(db, name, actor="op")
        except SegmentProblem as exc:
            assert f"is used by {user}" in str(exc)
        else:
            raise AssertionError(f"{name} was deleted while in use")


def test_campaign_cli_scores_saves_counts_and_installs(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["campaign", *args, "--database-url", url])
        return result.exit_code, result.output

    code, out = run("plays", "install")
    assert code == 0 and f"installed {len(PLAYS)} plays" in out
    code, out = run("plays", "list")
    assert code == 0 and "not installed" not in out and "disabled" in out
    code, out = run("score")
    assert code == 0 and "scored 0 members" in out
    code, out = run("segment", "save", "sleepy", json.dumps({"lifecycle": ["dormant"]}))
    assert code == 0 and "saved sleepy: 0 members" in out
    code, out = run("segment", "count", "sleepy")
    assert code == 0 and out.strip() == "0"
    code, out = run("segment", "count", '{"rfm": {"r": [6]}}')
    assert code == 2 and "'rfm.r': 6 is not one of" in out
    code, out = run("segment", "save", "loop", '{"segment": "loop"}')
    assert code == 2 and "uses itself" in out
