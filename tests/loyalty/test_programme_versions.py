"""The programme in the store: version 1 from the file, versions saved with their author and changes,
no lost update, the TOML file as import and export, and a new version taken by a running process."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
import sqlalchemy as sa
from PIL import Image

from loyalbot.loyalty import Loyalty, load_programme
from loyalbot.loyalty.programme import RewardSpec, parse_programme, programme_toml
from loyalbot.loyalty.versions import ImageRefused, NothingChanged, ProgrammeConflict, check_image
from loyalbot.storage.models import AuditLog, ProgrammeVersion, Reward


def with_reward(programme, **fields):
    spec = RewardSpec(**{"code": "cake", "cost": 90, "titles": {"en": "Cake", "zh_Hans": "蛋糕", "zh_Hant": "蛋糕"},
                         **fields})
    return programme.model_copy(update={"rewards": (*programme.rewards, spec)})


async def until(check, *, tries: int = 200) -> None:
    """Poll `check` until it holds (each try lets the other side's clock move on); fail after `tries`."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_the_file_becomes_version_1_and_then_the_store_is_the_truth(db, loyalty, caplog):
    assert loyalty.in_force.version == 1
    history = await loyalty.programmes.history()
    assert [(r.version, r.author) for r in history] == [(1, "file")]
    changed = with_reward(loyalty.programme)
    await loyalty.save_programme(changed, author="console:mia", based_on=1)
    caplog.set_level(logging.INFO, logger="loyalbot.loyalty.versions")
    restarted = Loyalty(db, load_programme())  # the same file, a new process
    await restarted.sync_programme()
    assert restarted.in_force.version == 2 and "cake" in [r.code for r in restarted.programme.rewards]
    assert "version 2 from the store" in caplog.text and "differs from the programme file" in caplog.text


async def test_a_save_is_audited_with_its_author_and_what_changed(db, loyalty):
    row = await loyalty.save_programme(with_reward(loyalty.programme), author="console:mia", based_on=1)
    assert row.version == 2 and row.author == "console:mia" and row.summary == ["rewards.cake: added"]
    async with db.read() as s:
        audit = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "programme_edit"))).scalar_one()
        cake = (await s.execute(sa.select(Reward).where(Reward.code == "cake"))).scalar_one()
    assert audit.actor == "console:mia" and audit.details == {"version": 2, "changes": ["rewards.cake: added"]}
    assert cake.titles["zh_Hant"] == "蛋糕" and cake.active
    cheaper = loyalty.programme.model_copy(update={"rewards": tuple(
        r.model_copy(update={"cost": 80}) if r.code == "cake" else r for r in loyalty.programme.rewards)})
    third = await loyalty.save_programme(cheaper, author="console:ada", based_on=2)
    assert third.summary == ["rewards.cake.cost: 90 → 80"]
    with pytest.raises(NothingChanged):
        await loyalty.save_programme(cheaper, author="console:ada", based_on=3)


async def test_saving_over_a_newer_version_is_refused_and_changes_nothing(db, loyalty):
    other = Loyalty(db, load_programme())  # a second operator's process
    await other.sync_programme()
    await loyalty.save_programme(with_reward(loyalty.programme), author="console:mia", based_on=1)
    stale = other.programme.model_copy(update={"earning": other.programme.earning.model_copy(
        update={"welcome_bonus": 50})})
    with pytest.raises(ProgrammeConflict):
        await other.save_programme(stale, author="console:ada", based_on=1)
    assert await other.programmes.newest_number() == 2
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(ProgrammeVersion))).scalar_one() == 2
    await other.programmes.refresh()
    assert other.programme.earning.welcome_bonus == 0 and "cake" in [r.code for r in other.programme.rewards]


async def test_two_saves_at_once_make_one_version(db, loyalty):
    first = with_reward(loyalty.programme, cost=70)
    second = with_reward(loyalty.programme, code="pie", cost=60)
    results = await asyncio.gather(loyalty.save_programme(first, author="console:a", based_on=1),
                                   loyalty.save_programme(second, author="console:b", based_on=1),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["ProgrammeConflict", "ProgrammeVersion"]
    assert await loyalty.programmes.newest_number() == 2


async def test_another_process_takes_the_new_version_within_its_check_interval(db, loyalty):
    bot = Loyalty(db, load_programme(), check_every=0.05)  # the bot's process, checking every 50 ms
    await bot.sync_programme()
    seen_before = bot.programme
    await loyalty.save_programme(with_reward(loyalty.programme), author="console:mia", based_on=1)

    async def bot_has_cake() -> bool:
        await bot.keep_current()
        return "cake" in [r.code for r in bot.programme.rewards]

    await until(bot_has_cake)
    assert bot.in_force.version == 2
    assert "cake" not in [r.code for r in seen_before.rewards], "the old object is left whole, never edited"


async def test_export_then_import_round_trips(db, loyalty, tmp_path):
    await loyalty.save_programme(with_reward(loyalty.programme, stock=5, per_member_limit=1,
                                             active_from="2026-12-01T09:00:00+01:00", min_tier="silver"),
                                 author="console:mia", based_on=1)
    text = programme_toml(loyalty.programme, header="export")
    assert parse_programme(text) == loyalty.programme
    with pytest.raises(NothingChanged):
        await loyalty.save_programme(parse_programme(text), author="cli:import", based_on=2)
    edited = parse_programme(text.replace("cost = 90\n", "cost = 95\n"))
    row = await loyalty.save_programme(edited, author="cli:import", based_on=2, action="programme_import")
    assert row.summary == ["rewards.cake.cost: 90 → 95"]


async def test_a_restock_moves_what_is_left_so_redemptions_meanwhile_stay_counted(db, loyalty):
    await loyalty.save_programme(with_reward(loyalty.programme, stock=50), author="console:mia", based_on=1)
    async with db.transaction() as s:
        await s.execute(sa.update(Reward).where(Reward.code == "cake").values(stock=37))  # 13 redeemed
    restocked = loyalty.programme.model_copy(update={"rewards": tuple(
        r.model_copy(update={"stock": 60}) if r.code == "cake" else r for r in loyalty.programme.rewards)})
    await loyalty.save_programme(restocked, author="console:mia", based_on=2)
    recosted = restocked.model_copy(update={"rewards": tuple(
        r.model_copy(update={"cost": 99}) if r.code == "cake" else r for r in restocked.rewards)})
    await loyalty.save_programme(recosted, author="console:mia", based_on=3)
    async with db.read() as s:
        assert (await s.execute(sa.select(Reward.stock).where(Reward.code == "cake"))).scalar_one() == 47


async def test_a_reward_left_out_stays_for_its_coupons_but_is_not_offered(db, loyalty):
    fewer = loyalty.programme.model_copy(update={"rewards": tuple(
        r for r in loyalty.programme.rewards if r.code != "tote")})
    await loyalty.save_programme(fewer, author="console:mia", based_on=1)
    async with db.read() as s:
        tote = (await s.execute(sa.select(Reward).where(Reward.code == "tote"))).scalar_one()
    assert tote.active is False


def picture(kind: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, kind)
    return buffer.getvalue()


@pytest.mark.parametrize(("kind", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                                    ("WEBP", "image/webp")])
def test_pictures_are_checked_for_their_real_type(kind, content_type):
    assert check_image(picture(kind))[0] == content_type


@pytest.mark.parametrize("data", [b"<svg onload=alert(1)>", b"GIF89a" + b"\0" * 40, b"", b"\x89PNG\r\n\x1a\n" + b"x" * 30])
def test_what_is_not_a_picture_is_refused(data):
    with pytest.raises(ImageRefused):
        check_image(data)


def test_a_picture_over_1_mb_is_refused():
    with pytest.raises(ImageRefused):
        check_image(picture("PNG") + b"\0" * (1024 * 1024))


async def test_a_version_naming_a_picture_not_in_the_store_is_refused(db, loyalty):
    with pytest.raises(ImageRefused):
        await loyalty.save_programme(with_reward(loyalty.programme, image="ab" * 32), author="console:mia",
                                     based_on=1)
    name = await loyalty.programmes.store_image(picture("PNG"), author="console:mia")
    await loyalty.save_programme(with_reward(loyalty.programme, image=name), author="console:mia", based_on=1)
    stored = await loyalty.programmes.image(name)
    assert stored is not None and stored.content_type == "image/png"
