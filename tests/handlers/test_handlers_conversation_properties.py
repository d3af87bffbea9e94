"""Property tests over every conversation step: arbitrary text and arbitrary button data, fed to each
state of each conversation, for someone who has joined and someone who has not, on both stores.

For every example: no apology (the router's answer to a failure), no error logged, an answer inside
Telegram's limits; whenever the bot's answer is a refusal (every text it used is a refusal's), the
store and the conversation state are exactly as before; and input that no step may take (control
characters, over-long text, button data we never made) is always refused.

The number of examples per step is LOYALBOT_PROPERTY_EXAMPLES (default 10); each test prints how
many it ran (`pytest -s`), and the counts are summed up in the report of this round.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalbot.chat.callbacks import ACTIONS, decode, survey_answer
from loyalbot.chat.i18n import LANGUAGES, Translator
from loyalbot.chat.limits import TEXT_LIMIT
from loyalbot.chat.port import text_problem
from tests.handlers.chatinput_support import store_chat_fixture

store_chat = store_chat_fixture()

EXAMPLES = int(os.environ.get("LOYALBOT_PROPERTY_EXAMPLES", "10"))
APOLOGIES = {Translator(lang).t("error.unexpected") for lang in LANGUAGES}
IDS = itertools.count(100_000)

# Texts whose use means "no, and nothing was done": refusals, nudges back to the buttons, re-asked questions.
REFUSAL_PREFIXES = ("error.", "input.", "stray.")
REFUSAL_KEYS = {
    "birthday.format", "birthday.future", "birthday.too_early", "birthday.no_such_day", "birthday.ambiguous",
    "birthday.year_needed", "start.use_buttons", "start.finish_first", "start.join_first", "start.not_your_contact",
    "feedback.use_buttons", "feedback.text_only", "survey.comment_text_only", "coupons.gone", "rewards.cannot",
    "rewards.why_points", "rewards.why_tier", "rewards.why_stock", "rewards.why_limit", "rewards.why_unavailable",
    "help.not_member",
}
# The questions a refusal may repeat (asking again changes nothing either).
QUESTION_KEYS = {"start.welcome", "start.choose_language", "start.terms", "start.marketing", "start.birthday",
                 "start.phone", "button.accept", "button.decline", "button.yes_please", "button.no_thanks",
                 "button.skip", "button.share_phone", "feedback.rate", "button.try_again"}


# --- the steps: how a fresh person gets there --------------------------------------------------------------


async def _join_until(chat, person, presses: int) -> None:
    labels = ["English", "I accept", "No, thanks", "Skip"]
    await person.send("/start")
    for label in labels[:presses]:
        await person.press(label)


async def _member(chat, uid):
    return await chat.registered(uid, points=500)


async def _survey(chat, person):
    member = await person.member()
    return await chat.loyalty.open_survey(member.id, "csat", trigger="manual", now=chat.clock())


Setup = Callable[[Any, int], Awaitable[Any]]


def _guest(presses: int | None) -> Setup:
    async def setup(chat, uid):
        person = chat.person(uid)
        if presses is not None:
            await _join_until(chat, person, presses)
        return person
    return setup


def _registered(*actions: str | tuple[str, str]) -> Setup:
    async def setup(chat, uid):
        person = await _member(chat, uid)
        survey = None
        for action in actions:
            if action == "survey":  # as if the scheduler had asked the question
                survey = await _survey(chat, person)
            elif action == "answer":
                assert survey is not None
                await person.press_data(survey_answer(survey.id, 4))
            elif isinstance(action, tuple):
                await person.press(action[1])
            else:
                await person.send(action)
        return person
    return setup


STEPS: dict[str, Setup] = {
    "guest: new": _guest(None),
    "guest: reg.lang": _guest(0),
    "guest: reg.terms": _guest(1),
    "guest: reg.mkt": _guest(2),
    "guest: reg.bday": _guest(3),
    "guest: reg.phone": _guest(4),
    "member: idle": _registered(),
    "member: fb.text": _registered("/feedback"),
    "member: fb.rating": _registered("/feedback", "fine coffee"),
    "member: settings": _registered("/settings"),
    "member: set.tz": _registered("/settings", ("press", "Time zone"), ("press", "Another one")),
    "member: set.bday": _registered("/settings", ("press", "Birthday")),
    "member: quiet hours": _registered("/settings", ("press", "Quiet hours")),
    "member: language": _registered("/language"),
    "member: rewards": _registered("/rewards"),
    "member: rewards confirm": _registered("/rewards", ("press", "A coffee of your choice")),
    "member: coupons": _registered("/rewards", ("press", "A coffee of your choice"), ("press", "Confirm"),
                                   "/coupons"),
    "member: privacy": _registered("/privacy"),
    "member: privacy.erase": _registered("/privacy", ("press", "Erase my data")),
    "member: survey asked": _registered("survey"),
    "member: sv.comment": _registered("survey", "answer"),
}


# --- what is fed in -----------------------------------------------------------------------------------------

CONTROL = st.sampled_from([chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, 0x85, 0x9F)])
INTERESTING_TEXTS = st.sampled_from([
    "1", "3", "5", "6", "skip", "跳过", "Skip", "1995-06-15", "1995年6月15日", "15/06/1995", "03/04/1995",
    "6月15日", "31.02.1990", "Europe/Paris", "Mars/Olympus", "💳 Card", "⭐ Points", "🎁 Rewards", "/cancel",
    "/start", "/frobnicate", "  ", "\n", "<b>x</b>", "長" * 4096, "x" * 4001,
])
TEXTS = st.one_of(st.text(max_size=60), INTERESTING_TEXTS,
                  st.tuples(st.text(max_size=20), CONTROL, st.text(max_size=20)).map("".join),
                  st.integers(4097, 4200).map(lambda n: "ж" * n))

ARG = st.one_of(st.from_regex(r"\A[0-9]{1,14}\Z"), st.from_regex(r"\A[A-Za-z0-9_-]{0,34}\Z"),
                st.sampled_from(["0", "1", "5", "11", "2147483647", "2147483648", "007", "-1", "menu", "off",
                                 "type", "2208", "care", "offers", "x y"]))


@st.composite
def _structured(draw) -> str:
    action = draw(st.sampled_from(sorted(ACTIONS)))
    verb = draw(st.one_of(st.sampled_from(sorted(ACTIONS[action])), st.text(max_size=3)))
    args = draw(st.lists(ARG, max_size=3))
    return ":".join([draw(st.sampled_from(["1", "1", "1", "2", ""])), action, verb, *args])


CALLBACKS = st.one_of(_structured(), st.text(max_size=80), st.binary(max_size=70).map(lambda b: b.hex()))


# --- the checks ---------------------------------------------------------------------------------------------


@contextmanager
def texts_used():
    """The message ids the bot used while answering (every text goes through Translator)."""
    used: list[str] = []
    originals = Translator.t, Translator.label, Translator.n

    def t(self, msgid, **params):
        used.append(msgid)
        return originals[0](self, msgid, **params)

    def label(self, msgid, **params):
        used.append(msgid)
        return originals[1](self, msgid, **params)

    def n(self, singular, plural, count, **params):
        used.append(singular)
        return originals[2](self, singular, plural, count, **params)

    Translator.t, Translator.label, Translator.n = t, label, n
    try:
        yield used
    finally:
        Translator.t, Translator.label, Translator.n = originals


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _is_refusal(used: list[str]) -> bool:
    refusals = [k for k in used if k.startswith(REFUSAL_PREFIXES) or k in REFUSAL_KEYS]
    return bool(refusals) and all(k in REFUSAL_KEYS or k.startswith(REFUSAL_PREFIXES) or k in QUESTION_KEYS
                                  for k in used)


async def _check(chat, person, act: Callable[[], Awaitable[list]], must_refuse: bool) -> None:
    before = await chat.snapshot()
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        with texts_used() as used:
            replies = await act()
    finally:
        logging.getLogger().removeHandler(errors)
    shown = [t for r in replies for t in (r.text, r.toast) if t]
    assert not APOLOGIES & set(shown), f"an apology, after: {used}"
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert shown or not replies, "a reply says something"
    for reply in replies:
        assert reply.text is None or len(reply.text) <= (1024 if reply.media else 4096)
        assert reply.toast is None or len(reply.toast) <= 200
    if must_refuse:
        assert _is_refusal(used), f"input no step may take was not refused: {used}"
    if must_refuse or _is_refusal(used):
        assert await chat.snapshot() == before, f"a refusal ({used}) changed the store or the step"


COUNTS: dict[tuple[str, str], int] = {}


def _count(step: str, kind: str) -> None:
    COUNTS[(step, kind)] = COUNTS.get((step, kind), 0) + 1


PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@pytest.mark.parametrize("step", list(STEPS))
@PROPERTY
@given(text=TEXTS)
async def test_any_text_at_any_step(store_chat, step, text):
    person = await STEPS[step](store_chat, next(IDS))
    refuse = text_problem(text) is not None or len(text) > TEXT_LIMIT
    await _check(store_chat, person, lambda: person.send(text), refuse)
    _count(step, "text")


@pytest.mark.parametrize("step", list(STEPS))
@PROPERTY
@given(data=CALLBACKS)
async def test_any_button_data_at_any_step(store_chat, step, data):
    person = await STEPS[step](store_chat, next(IDS))
    await _check(store_chat, person, lambda: person.press_data(data), decode(data) is None)
    _count(step, "button")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Print how many examples ran per step when the module is done (visible with -s)."""
    yield
    if COUNTS:
        print("\nexamples per step (text, button), all stores together:")
        for step in STEPS:
            print(f"  {step:26} {COUNTS.get((step, 'text'), 0):5} {COUNTS.get((step, 'button'), 0):5}")
        print(f"  {'total':26} {sum(COUNTS.values()):11}")
