"""Campaign offers and frequency caps, on SQLite and PostgreSQL: what a member gets, and what they never get twice.

Offers: the coupon is issued once per member and campaign, when the message is handed over (never for a
skipped message), survives re-plans, retries and a crash between hand-over and send, and is reminded of
once, N days before it lapses unused. Caps: marketing messages per member's local day and ISO week.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from loyalbot.chat.callbacks import decode
from loyalbot.chat.outbound import Transient
from loyalbot.loyalty.programme import Campaigns, ProgrammeError, programme_from_data
from loyalbot.loyalty.service import Loyalty
from loyalbot.loyalty.versions import programme_data
from loyalbot.scheduler import editing
from loyalbot.scheduler.caps import Caps, hold_back
from loyalbot.scheduler.cli import schedule_app
from loyalbot.scheduler.dispatcher import UNKNOWN_DELIVERY, Dispatcher
from loyalbot.scheduler.planner import Planner
from loyalbot.scheduler.service import SchedulerService
from loyalbot.storage import Db
from loyalbot.storage.models import Coupon, LedgerEntry, Member, Outbox, Reward, Schedule
from tests.scheduler.conftest import FakeChat, add_member, at

JOINED = at("2027-01-01 10:00")
OFFER = {"reward": "coffee", "valid_days": 7, "remind_days_before": 2}


class Clock:
    """A settable clock for the dispatcher (tests never sleep to wait for time)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(store_url):
    db = Db(store_url)
    yield db
    await db.dispose()


async def loyalty_with(db: Db, programme, **caps: int) -> Loyalty:
    if caps:
        programme = programme.model_copy(update={"campaigns": Campaigns(**caps)})
    service = Loyalty(db, programme)
    await service.sync_programme()
    return service


@pytest.fixture
async def loyalty(store, programme) -> Loyalty:
    return await loyalty_with(store, programme)


async def campaign(loyalty: Loyalty, name: str, now: datetime, *, offer: dict | None = None, one_off: bool = True,
                   when_capped: str | None = None, template: str | None = None, **fields) -> Schedule:
    params: dict = {}
    if offer is not None:
        params["offer"] = offer
    if when_capped is not None:
        params["when_capped"] = when_capped
    row = Schedule(name=name, kind=fields.pop("kind", "broadcast"), params=params,
                   one_off_at=now if one_off else None, cron=None if one_off else "0 9 * * *",
                   templates={"en": template or f"{name}: hello {{{{ name }}}}"}, **fields)
    return await editing.add(loyalty, row, actor="test", now=now)


def dispatcher(db: Db, chat: FakeChat, clock: Clock, caps: Caps | None = None, **options) -> Dispatcher:
    # No per-chat spacing: the clock stands still, and a member here gets several messages in a row.
    return Dispatcher(db, chat, rate=1000, per_chat_interval=0.0, clock=clock,
                      caps=(lambda: caps) if caps else None, **options)


async def coupons_of(db: Db, member_id: int) -> list[Coupon]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Coupon).where(Coupon.member_id == member_id)
                                     .order_by(Coupon.id))).scalars())


async def rows_of(db: Db, member_id: int) -> list[Outbox]:
    async with db.read() as s:
        return list((await s.execute(sa.select(Outbox).where(Outbox.member_id == member_id)
                                     .order_by(Outbox.id))).scalars())


# --- offers -----------------------------------------------------------------------------------------


async def test_offer_coupon_is_issued_once_when_sent_and_shown_with_its_button(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED, language="zh_Hant", timezone="Asia/Taipei")
    schedule = await campaign(loyalty, "spring", now, offer=OFFER,
                              template="{{ name }}: {{ offer.title }} {{ offer.code }} {{ offer.expires|date }}")
    planner = Planner(loyalty)
    assert (await planner.run(schedule, now=now)).planned == 1
    assert (await planner.run(schedule, now=now)).already_planned == 1  # a re-plan plans nothing new
    assert await coupons_of(store, ann.id) == []  # promised, not issued: nothing has been sent yet
    chat, clock = FakeChat(), Clock(now)
    await dispatcher(store, chat, clock).drain()
    [message] = chat.delivered[ann.chat_id]
    [coupon] = await coupons_of(store, ann.id)
    assert coupon.code in message.text and "任選咖啡一杯" in message.text and "2027年3月8日" in message.text
    assert coupon.points_spent == 0 and coupon.status == "active"
    assert coupon.expires_at.replace(tzinfo=None) == (now + timedelta(days=7)).replace(tzinfo=None)
    [[button]] = message.buttons
    assert button.text == "查看我的優惠券" and decode(button.data).args == ("c", coupon.code)
    [row] = await rows_of(store, ann.id)
    assert row.coupon_id == coupon.id and row.status == "sent"
    async with store.read() as s:  # free: no points moved, the ledger and the balance agree
        entries = (await s.execute(sa.select(LedgerEntry).where(LedgerEntry.member_id == ann.id))).all()
        balance = (await s.execute(sa.select(Member.balance).where(Member.id == ann.id))).scalar_one()
    assert entries == [] and balance == 0
    await planner.run(schedule, now=now + timedelta(hours=1))
    await dispatcher(store, chat, clock).drain()
    assert len(chat.delivered[ann.chat_id]) == 1 and len(await coupons_of(store, ann.id)) == 1


async def test_a_template_without_the_code_gets_the_offer_line(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    schedule = await campaign(loyalty, "plain", now, offer=OFFER)
    await Planner(loyalty).run(schedule, now=now)
    chat = FakeChat()
    await dispatcher(store, chat, Clock(now)).drain()
    [coupon] = await coupons_of(store, ann.id)
    text = chat.texts(ann.chat_id)[0]
    assert text.startswith("plain: hello Ann") and coupon.code in text and "A coffee of your choice" in text


async def test_a_recurring_campaign_gives_one_coupon_per_member(store, loyalty):
    day1 = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    schedule = await campaign(loyalty, "daily", day1, offer=OFFER, one_off=False)
    planner, chat, clock = Planner(loyalty), FakeChat(), Clock(day1)
    await planner.run(schedule, now=day1)
    await dispatcher(store, chat, clock).drain()
    clock.now = day2 = day1 + timedelta(days=1)
    stats = await planner.run(schedule, now=day2)
    assert stats.planned == 0 and stats.skipped["offer_taken"] == 1
    await dispatcher(store, chat, clock).drain()
    assert len(chat.delivered[ann.chat_id]) == 1 and len(await coupons_of(store, ann.id)) == 1


async def test_no_coupon_for_a_skipped_message(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED, marketing_consent=False)
    schedule = await campaign(loyalty, "nope", now, offer=OFFER)
    stats = await Planner(loyalty).run(schedule, now=now)
    assert stats.skipped["no_consent"] == 1
    await dispatcher(store, FakeChat(), Clock(now)).drain()
    assert await coupons_of(store, ann.id) == []


async def test_a_reward_withdrawn_after_saving_skips_the_offer_with_a_reason(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    schedule = await campaign(loyalty, "retired", now, offer=OFFER)
    async with store.transaction() as tx:  # the reward left the catalogue after the campaign was saved
        await tx.execute(sa.update(Reward).where(Reward.code == "coffee").values(active=False))
    stats = await Planner(loyalty).run(schedule, now=now)
    assert stats.planned == 0 and stats.skipped["offer_unavailable"] == 1
    await dispatcher(store, FakeChat(), Clock(now)).drain()
    assert await coupons_of(store, ann.id) == []


async def test_a_crash_between_hand_over_and_send_issues_one_coupon(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    bob = await add_member(loyalty, now=JOINED, first_name="Bob")
    schedule = await campaign(loyalty, "crash", now, offer=OFFER)
    await Planner(loyalty).run(schedule, now=now)
    clock, chat = Clock(now), FakeChat()
    first = dispatcher(store, chat, clock, worker_id="first")
    claimed = await first.claim(10)
    assert await coupons_of(store, ann.id) == []  # claimed only: a crash here issues nothing
    ann_row = next(r for r in claimed if r.member_id == ann.id)
    await first._handover([ann_row.id])  # noqa: SLF001 - the step a crash interrupts
    # ... the process dies here: Ann's message may or may not have reached Telegram, Bob's was never handed over
    [issued] = await coupons_of(store, ann.id)
    clock.now = now + timedelta(minutes=10)
    await dispatcher(store, chat, clock, worker_id="second", resend_unknown=True).drain()
    [coupon] = await coupons_of(store, ann.id)
    assert coupon.id == issued.id and coupon.code in chat.texts(ann.chat_id)[0]
    assert len(await coupons_of(store, bob.id)) == 1 and len(chat.delivered[bob.chat_id]) == 1


async def test_without_resending_a_crashed_row_stays_unknown_with_its_coupon(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    schedule = await campaign(loyalty, "unknown", now, offer=OFFER)
    await Planner(loyalty).run(schedule, now=now)
    clock, chat = Clock(now), FakeChat()
    first = dispatcher(store, chat, clock, worker_id="first")
    [row] = await first.claim(10)
    await first._handover([row.id])  # noqa: SLF001
    clock.now = now + timedelta(minutes=10)
    await dispatcher(store, chat, clock, worker_id="second").drain()
    [stored] = await rows_of(store, ann.id)
    assert stored.status == "failed" and stored.last_error == UNKNOWN_DELIVERY
    assert len(await coupons_of(store, ann.id)) == 1 and chat.delivered[ann.chat_id] == []


async def test_rows_given_back_unsent_withdraw_their_coupon(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    schedule = await campaign(loyalty, "stop", now, offer=OFFER)
    await Planner(loyalty).run(schedule, now=now)
    clock, chat = Clock(now), FakeChat()
    first = dispatcher(store, chat, clock, worker_id="first")
    [row] = await first.claim(10)
    await first._handover([row.id])  # noqa: SLF001
    await first._release([(row.id, 0.0, True)])  # noqa: SLF001 - a graceful stop: certainly not sent
    assert await coupons_of(store, ann.id) == []
    await dispatcher(store, chat, clock, worker_id="second").drain()
    [coupon] = await coupons_of(store, ann.id)
    assert coupon.code in chat.texts(ann.chat_id)[0]


async def test_a_send_telegram_refuses_leaves_no_coupon_and_a_retry_issues_one(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    bob = await add_member(loyalty, now=JOINED, first_name="Bob")
    schedule = await campaign(loyalty, "refused", now, offer=OFFER)
    await Planner(loyalty).run(schedule, now=now)
    clock, chat = Clock(now), FakeChat(faults=[Transient("Bad Gateway")])
    chat.blocked.add(bob.chat_id)
    await dispatcher(store, chat, clock, backoff_base=0.0).drain()
    assert await coupons_of(store, bob.id) == []  # blocked: he never got it
    [bob_row] = await rows_of(store, bob.id)
    assert bob_row.status == "failed" and bob_row.coupon_id is None
    [coupon] = await coupons_of(store, ann.id)  # a server error first, then sent: one coupon, the promised code
    assert [coupon.code in t for t in chat.texts(ann.chat_id)] == [True]


async def test_the_reminder_comes_once_n_days_before_an_unused_coupon_lapses(store, loyalty):
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    bob = await add_member(loyalty, now=JOINED, first_name="Bob")
    schedule = await campaign(loyalty, "remind", now, offer=OFFER)
    service = SchedulerService(store, loyalty, dispatch=False)
    await Planner(loyalty).run(schedule, now=now)
    clock, chat = Clock(now), FakeChat()
    await dispatcher(store, chat, clock).drain()
    [bob_coupon] = await coupons_of(store, bob.id)
    async with store.transaction() as tx:  # Bob used his at the counter
        await tx.execute(sa.update(Coupon).where(Coupon.id == bob_coupon.id).values(status="used", used_at=now))
    early = await service.plan_offer_reminders(now=now + timedelta(days=4, hours=23))
    assert early["remind"].planned == 0
    due = now + timedelta(days=5, minutes=5)
    assert (await service.plan_offer_reminders(now=due))["remind"].planned == 1
    assert (await service.plan_offer_reminders(now=due + timedelta(hours=3)))["remind"].planned == 0
    clock.now = due
    await dispatcher(store, chat, clock).drain()
    [coupon] = await coupons_of(store, ann.id)
    reminder = chat.texts(ann.chat_id)[1]
    assert coupon.code in reminder and "still waiting" in reminder
    assert len(chat.delivered[bob.chat_id]) == 1
    [offer_row, reminder_row] = await rows_of(store, ann.id)
    assert reminder_row.kind == "coupon_expiry" and reminder_row.schedule_id == schedule.id


@pytest.mark.parametrize(("offer", "problem"), [
    ({"reward": "caviar", "valid_days": 7}, "not in the reward catalogue"),
    ({"reward": "coffee", "valid_days": 0}, "valid_days"),
    ({"reward": "coffee", "valid_days": 7, "remind_days_before": 7}, "remind_days_before"),
    ({"reward": "coffee", "valid_days": 7, "colour": "red"}, "unknown offer setting"),
])
async def test_a_bad_offer_is_refused_naming_it(store, loyalty, offer, problem):
    now = at("2027-03-01 10:00")
    await add_member(loyalty, now=JOINED)
    with pytest.raises(editing.ScheduleProblem, match=problem) as caught:
        await campaign(loyalty, "bad", now, offer=offer)
    assert caught.value.field == "offer"
    assert await editing.list_schedules(loyalty) == []


async def test_a_template_showing_an_offer_needs_one_and_when_capped_is_checked(store, loyalty):
    now = at("2027-03-01 10:00")
    await add_member(loyalty, now=JOINED)
    with pytest.raises(editing.ScheduleProblem, match="has none"):
        await campaign(loyalty, "bad", now, template="{{ offer.code }}")
    with pytest.raises(editing.ScheduleProblem, match="when_capped") as caught:
        await campaign(loyalty, "bad", now, when_capped="later")
    assert caught.value.field == "when_capped"


def test_the_programme_checks_its_caps(programme):
    data = programme_data(programme)
    assert programme_from_data({**data, "campaigns": {"max_per_day": 1, "max_per_week": 3}}).campaigns.max_per_week == 3
    with pytest.raises(ProgrammeError, match="max_per_week"):
        programme_from_data({**data, "campaigns": {"max_per_day": 3, "max_per_week": 2}})
    with pytest.raises(ProgrammeError, match="max_per_day"):
        programme_from_data({**data, "campaigns": {"max_per_day": 0}})


# --- frequency caps ---------------------------------------------------------------------------------


async def test_caps_count_each_members_own_local_day(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_day=1)
    caps = Caps(max_per_day=1)
    first_at = at("2027-03-01 15:30")  # Taipei 23:30 on 1 March; New York 10:30 on 1 March
    taipei = await add_member(loyalty, now=JOINED, timezone="Asia/Taipei")
    new_york = await add_member(loyalty, now=JOINED, timezone="America/New_York", first_name="Ny")
    planner, chat, clock = Planner(loyalty), FakeChat(), Clock(first_at)
    await planner.run(await campaign(loyalty, "one", first_at), now=first_at)
    await dispatcher(store, chat, clock, caps).drain()
    second_at = clock.now = at("2027-03-01 16:30")  # Taipei 00:30 on 2 March (a new day); New York 11:30, same day
    await planner.run(await campaign(loyalty, "two", second_at), now=second_at)
    await dispatcher(store, chat, clock, caps).drain()
    assert chat.texts(taipei.chat_id) == ["one: hello Ann", "two: hello Ann"]
    assert chat.texts(new_york.chat_id) == ["one: hello Ny"]
    assert [(r.status, r.skip_reason) for r in await rows_of(store, new_york.id)] == [
        ("sent", None), ("skipped", "frequency_cap")]


async def test_care_reminders_and_surveys_are_not_counted(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_day=1)
    caps = Caps(max_per_day=1)
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    planner, chat, clock = Planner(loyalty), FakeChat(), Clock(now)
    care = Schedule(name="care", kind="birthday", daily_time="09:00", templates={"en": "care {{ name }}"})
    care = await editing.add(loyalty, care, actor="test", now=now)
    await planner.plan_for_member(care, ann.id, period="2027", now=now)
    async with store.transaction() as tx:  # a transactional notice, as the Notifier writes them
        tx.add(Outbox(idempotency_key=f"points:{ann.id}:1", member_id=ann.id, chat_id=ann.chat_id,
                      kind="points", period="1", text="points credited", not_before=now, created_at=now))
    await dispatcher(store, chat, clock, caps).drain()
    await planner.run(await campaign(loyalty, "promo", now), now=now)
    await planner.run(await campaign(loyalty, "promo2", now), now=now)
    await dispatcher(store, chat, clock, caps).drain()
    texts = chat.texts(ann.chat_id)
    assert "care Ann" in texts and "points credited" in texts
    assert sum(t.startswith("promo") for t in texts) == 1  # one marketing message a day, whatever else came


async def test_a_capped_message_is_delayed_when_the_schedule_says_so(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_day=1)
    caps = Caps(max_per_day=1)
    now = at("2027-03-01 14:00")  # Taipei 22:00
    ann = await add_member(loyalty, now=JOINED, timezone="Asia/Taipei")
    planner, chat, clock = Planner(loyalty), FakeChat(), Clock(now)
    await planner.run(await campaign(loyalty, "first", now), now=now)
    await planner.run(await campaign(loyalty, "later", now, offer=OFFER, when_capped="delay"), now=now)
    await dispatcher(store, chat, clock, caps).drain()
    assert chat.texts(ann.chat_id) == ["first: hello Ann"]
    held = (await rows_of(store, ann.id))[1]
    assert held.status == "pending" and held.not_before.replace(tzinfo=None) == datetime(2027, 3, 2, 14, 0)
    assert await coupons_of(store, ann.id) == []  # a delayed message has not issued its coupon
    clock.now = at("2027-03-02 14:00")
    await dispatcher(store, chat, clock, caps).drain()
    assert len(chat.texts(ann.chat_id)) == 2 and len(await coupons_of(store, ann.id)) == 1


async def test_the_week_cap_counts_the_members_iso_week(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_week=2)
    caps = Caps(max_per_week=2)
    ann = await add_member(loyalty, now=JOINED, timezone="America/New_York")
    planner, chat = Planner(loyalty), FakeChat()
    # Monday 1 March to Wednesday 3 March 2027, New York mornings; then Sunday night, local time
    for name, moment in (("mon", "2027-03-01 14:00"), ("tue", "2027-03-02 14:00"), ("wed", "2027-03-03 14:00"),
                         ("sun", "2027-03-08 03:00"), ("mon2", "2027-03-08 14:00")):
        clock = Clock(at(moment))
        await planner.run(await campaign(loyalty, name, at(moment)), now=at(moment))
        await dispatcher(store, chat, clock, caps).drain()
    # "sun" is 22:00 on Sunday 7 March in New York (still the first week): capped; Monday 8 March is a new week
    assert [t.split(":")[0] for t in chat.texts(ann.chat_id)] == ["mon", "tue", "mon2"]


async def test_two_dispatchers_claiming_at_once_keep_the_cap(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_day=1)
    caps = Caps(max_per_day=1)
    now = at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    planner = Planner(loyalty)
    for name in ("a", "b", "c", "d"):
        await planner.run(await campaign(loyalty, name, now), now=now)
    clock = Clock(now)
    one, two = (dispatcher(store, FakeChat(), clock, caps, worker_id=w, batch_size=1) for w in ("one", "two"))
    claimed = await asyncio.gather(one.claim(1), two.claim(1), one.claim(1), two.claim(1))
    assert sum(len(batch) for batch in claimed) == 1
    assert sorted(r.skip_reason or r.status for r in await rows_of(store, ann.id)) == [
        "frequency_cap", "frequency_cap", "frequency_cap", "sending"]


async def _claim(conn, row_ids: list[int], caps: Caps, now: datetime) -> list:
    """A dispatcher's claim of these rows, in `conn`'s open transaction (as Dispatcher.claim does it)."""
    result = await conn.execute(sa.update(Outbox).where(Outbox.id.in_(row_ids))
                                .values(status="sending", claimed_by="test", claimed_at=now)
                                .returning(Outbox.id, Outbox.member_id, Outbox.kind, Outbox.schedule_id,
                                           Outbox.not_before))
    return await hold_back(conn, result.all(), caps, now, postgres=True)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # SQLite has one writer: claims cannot overlap
async def test_a_second_claim_for_a_member_waits_for_the_first_and_counts_it(store, programme):
    loyalty = await loyalty_with(store, programme, max_per_day=1)
    caps, now = Caps(max_per_day=1), at("2027-03-01 10:00")
    ann = await add_member(loyalty, now=JOINED)
    planner = Planner(loyalty)
    for name in ("a", "b"):
        await planner.run(await campaign(loyalty, name, now), now=now)
    first_row, second_row = (r.id for r in await rows_of(store, ann.id))

    async def second() -> list:
        async with store.engine.begin() as conn:
            return await _claim(conn, [second_row], caps, now)

    async with store.engine.connect() as conn:
        await conn.begin()
        assert len(await _claim(conn, [first_row], caps, now)) == 1
        other = asyncio.create_task(second())
        await asyncio.sleep(0.3)  # room for the other claim to reach the member's lock
        assert not other.done()  # it waits for this claim instead of counting without it
        await conn.commit()
    assert await other == []
    assert [r.skip_reason for r in await rows_of(store, ann.id)] == [None, "frequency_cap"]


async def test_the_cli_adds_changes_and_removes_an_offer(store_url, store, loyalty):
    await add_member(loyalty, now=JOINED)

    def cli(*args: str):
        return CliRunner().invoke(schedule_app, [*args, "--database-url", store_url])

    added = await asyncio.to_thread(cli, "add", "gift", "--kind", "broadcast", "--cron", "0 10 * * 1",
                                    "--offer-reward", "pastry", "--offer-valid-days", "5", "--when-capped", "delay")
    assert added.exit_code == 0, added.output
    [row] = await editing.list_schedules(loyalty)
    assert row.params["offer"] == {"reward": "pastry", "valid_days": 5} and row.params["when_capped"] == "delay"
    changed = await asyncio.to_thread(cli, "edit", "gift", "--offer-remind-days", "2")
    assert changed.exit_code == 0, changed.output
    assert (await editing.get(loyalty, "gift")).params["offer"] == {"reward": "pastry", "valid_days": 5,
                                                                     "remind_days_before": 2}
    refused = await asyncio.to_thread(cli, "edit", "gift", "--offer-reward", "caviar")
    assert refused.exit_code == 2 and "not in the reward catalogue" in refused.output
    too_late = await asyncio.to_thread(cli, "edit", "gift", "--offer-remind-days", "5")
    assert too_late.exit_code == 2 and "remind_days_before" in too_late.output
    removed = await asyncio.to_thread(cli, "edit", "gift", "--offer-reward", "none")
    assert removed.exit_code == 0 and "offer" not in (await editing.get(loyalty, "gift")).params
