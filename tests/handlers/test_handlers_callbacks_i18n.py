"""The callback-data codec, language picking and locale formatting."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalbot.chat.callbacks import ACTIONS, Callback, decode, encode, survey_answer
from loyalbot.chat.i18n import Translator, pick_language


def test_round_trip_with_typed_arguments():
    data = encode("rw", "c", 12, "req8")
    assert data == "1:rw:c:12:req8"
    assert decode(data) == Callback("rw", ("c", 12, "req8"))
    assert decode(survey_answer(7, 5)) == Callback("sv", ("a", 7, 5))


@pytest.mark.parametrize("data", [
    None, "", "1", "1:rw", "2:rw:c:12:req8", "1:zz:c:1", "1:rw:q:1", "1:rw:c:twelve:req8", "1:rw:c:-1:req8",
    "1:rw:c:12", "1:rw:c:12:req8:extra", "1:rw:c:12:bad token", "1:sv:a:1:5.0", "1:rw:p:" + "9" * 13,
    "1:st:n:everything", "1:rw:c:12:" + "x" * 60, "1:rw:c:12:ЖЖ", 12345,
])
def test_anything_malformed_decodes_to_none(data):
    assert decode(data) is None


def test_over_64_bytes_is_refused_both_ways():
    assert decode("1:rw:c:1:" + "a" * 56) is None  # 65 bytes
    with pytest.raises(ValueError):
        encode("rw", "c", 1, "a" * 40 + "b" * 20)


def test_encode_refuses_what_would_not_decode():
    with pytest.raises(ValueError):
        encode("rw", "c", "12", "req")  # an int given as text
    with pytest.raises(ValueError):
        encode("nope", "x")


@given(st.text(max_size=100))
def test_decode_never_raises(data):
    result = decode(data)
    assert result is None or (result.action in ACTIONS and len(data.encode()) <= 64)


@pytest.mark.parametrize(("code", "lang"), [
    ("en", "en"), ("de", "en"), (None, "en"), ("", "en"), ("zh", "zh_Hans"), ("zh-hans", "zh_Hans"),
    ("zh-CN", "zh_Hans"), ("zh-SG", "zh_Hans"), ("zh-hant", "zh_Hant"), ("zh-TW", "zh_Hant"),
    ("zh-HK", "zh_Hant"), ("zh-MO", "zh_Hant"), ("zh_Hant_TW", "zh_Hant"), ("ZH-Hant", "zh_Hant"),
])
def test_pick_language(code, lang):
    assert pick_language(code) == lang


def test_dates_numbers_and_money_per_locale():
    day = date(2027, 1, 31)
    assert Translator("en").date(day) == "31 Jan 2027"
    assert Translator("zh_Hans").date(day) == "2027年1月31日"
    assert Translator("zh_Hant").date(day) == "2027年1月31日"
    assert Translator("en").number(1234567) == "1,234,567"
    assert Translator("en").money(120, "EUR") == "€120.00"
    # A datetime is shown on the member's own calendar day.
    late = datetime(2027, 1, 31, 20, 0, tzinfo=UTC)
    assert Translator("en", timezone="Asia/Shanghai").date(late) == "1 Feb 2027"


def test_user_text_in_placeholders_is_escaped_and_plurals_follow_the_count():
    tr = Translator("en")
    assert tr.t("start.welcome_back", name="<b>Eve</b>") == "Welcome back &lt;b&gt;Eve&lt;/b&gt;! ☕ What can we do for you?"
    assert tr.n("points.balance", "points.balance_plural", 1) == "You have <b>1</b> point."
    assert tr.n("points.balance", "points.balance_plural", 2500) == "You have <b>2,500</b> points."
    assert Translator("zh_Hans").n("points.balance", "points.balance_plural", 2) == "您有 <b>2</b> 积分。"


def test_an_unknown_language_falls_back_to_english():
    assert Translator("fr").t("menu.card") == "💳 Card"


def test_button_labels_are_plain_text_while_messages_are_escaped_html():
    tr = Translator("en")
    assert tr.label("rewards.button", title="Tea & cake", cost=5) == "Tea & cake · 5"
    assert tr.t("rewards.item", title="Tea & cake", cost=5) == "<b>Tea &amp; cake</b> — 5 points"
