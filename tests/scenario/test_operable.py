"""Operating the bot, on aiogram and on python-telegram-bot: what Prometheus scrapes from /metrics after members
chat and a broadcast goes out, and JSON log lines that parse and carry no personal data.

The app runs as `loyalbot run` assembles it: the scheduler (planner, dispatcher) and the console attached.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from loyalbot.bot.app import App
from loyalbot.bot.local_api import LocalApiControl, LocalBotApi
from loyalbot.bot.logs import json_formatter
from loyalbot.bot.runtime import Connection
from loyalbot.chat.logids import LogIds
from loyalbot.scheduler.planner import Planner
from loyalbot.storage.models import Schedule
from tests.scenario.conftest import FRAMEWORKS, TOKEN, scenario_settings
from tests.scenario.driver import Chat, TestClock, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(params=FRAMEWORKS, loop_scope="module")
async def chat(request: pytest.FixtureRequest, server: LocalBotApi, tg: LocalApiControl, store_file: Any
               ) -> AsyncIterator[Chat]:
    group = await tg.create_group("Staff", is_forum=True)
    clock = TestClock()
    settings = scenario_settings(server, store_file, group["id"]).model_copy(update={"instance": "replica-a"})
    app = App(settings, framework=request.param, clock=clock, console_port=0,
              connection=Connection(token=TOKEN, api_url=server.url, polling_timeout=1))
    app.attach_rooms()
    await app.start()
    try:
        yield Chat(tg, app, group["id"], clock)
    finally:
        await app.stop()


async def scrape(chat: Chat) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as Prometheus reads it: every sample by name and labels."""
    console = chat.app.context.services.console
    async with httpx.AsyncClient() as web:
        page = await web.get(f"{console.url}/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_members_chat_and_a_broadcast_goes_out(chat: Chat) -> None:
    before = await scrape(chat)
    answered = chat.app.runtime.pipeline.handled
    ann, ben = await chat.member("Ann"), await chat.member("Ben")
    for person in (ann, ben):
        await person.join(marketing=True)  # a broadcast needs their consent
    await ann.send("/points")

    async def counted() -> dict:  # the store's gauges are read at most once every max_age seconds
        samples = await scrape(chat)
        return samples if value(samples, "loyalbot_members") == 2 else {}

    after_chat = await eventually(counted)
    handled = value(after_chat, "loyalbot_updates_total", outcome="handled") - value(
        before, "loyalbot_updates_total", outcome="handled")
    # Each step of two joins and the /points: one update answered each.
    assert handled == chat.app.runtime.pipeline.handled - answered >= 13
    assert value(after_chat, "loyalbot_updates_total", outcome="failed") == 0
    # Every handled update's latency was observed, in the histogram Grafana takes quantiles of.
    latency_count = value(after_chat, "loyalbot_update_latency_seconds_count") - value(
        before, "loyalbot_update_latency_seconds_count")
    assert latency_count == handled
    assert value(after_chat, "loyalbot_update_latency_seconds_bucket", le="+Inf") == value(
        after_chat, "loyalbot_update_latency_seconds_count")
    assert value(after_chat, "loyalbot_inbox_depth", state="pending") == 0
    assert value(after_chat, "loyalbot_planner_leader", instance="replica-a") == 1  # the only replica plans

    # A broadcast to both; Ben has blocked the bot meanwhile.
    await chat.tg.set_user_state(ben.id, blocked=True)
    now = chat.clock()
    async with chat.app.db.transaction() as tx:
        news = Schedule(name="news", kind="broadcast", one_off_at=now, created_at=now, updated_at=now,
                        templates={"en": "Fresh pastries today!"})
        tx.add(news)
    assert (await Planner(chat.loyalty).run(news, now=now)).planned == 2

    async def sent() -> dict:
        samples = await scrape(chat)
        # The store's gauges may lag a scrape or two (one read serves the scrapes of `max_age` seconds).
        drained = value(samples, "loyalbot_outbox_depth", status="pending") + value(
            samples, "loyalbot_outbox_depth", status="sending") == 0
        return samples if drained and value(samples, "loyalbot_outbox_sends_total", result="ok") >= 1 and value(
            samples, "loyalbot_outbox_sends_total", result="403") >= 1 else {}

    done = await eventually(sent)
    assert value(done, "loyalbot_outbox_sends_total", result="ok") == 1
    assert value(done, "loyalbot_outbox_sends_total", result="403") == 1
    assert value(done, "loyalbot_telegram_429_total", source="outbox") == 0
    assert value(done, "loyalbot_relay_queue") == 0


async def test_json_logs_parse_line_by_line_and_name_no_member(chat: Chat) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter("replica-a"))
    handler.addFilter(LogIds())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what `loyalbot run` logs by default (LOYALBOT_LOG_LEVEL)
    try:
        ann = await chat.registered_member("Annabel")
        await ann.send("/points")
        await ann.send("my secret words \u202e\x07")
        await ann.send("/nonsense")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    member = await ann.record()
    lines = stream.getvalue().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message", "instance"} <= set(record)
        assert record["instance"] == "replica-a"
    ours = [r for r in records if r["logger"].startswith(("loyalbot", "aiogram", "telegram"))]
    assert any("update_id" in r for r in ours)  # lines made while handling an update say which one
    text = "\n".join(lines)
    for personal in ("Annabel", "secret words", str(member.telegram_id), member.phone, member.member_no):
        assert personal and personal not in text
