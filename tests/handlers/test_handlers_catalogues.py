"""The catalogues are complete: every key used in handlers/ (found by Babel's own extractor) and every
refusal code has a real translation in English, Simplified and Traditional Chinese."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import loyalbot.loyalty.errors as errors
from loyalbot.chat.i18n import LANGUAGES, catalogue_path

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
KEYWORDS = {"t": None, "n": (1, 2), "N_": None, "toast": None}
PLACEHOLDER = re.compile(r"\{(\w+)\}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def used_keys() -> set[str | tuple[str, str]]:
    keys: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(HANDLERS), method_map=[("**.py", "python")], keywords=KEYWORDS):
        keys.add(message if isinstance(message, str) else tuple(message))
    return keys


def catalogue(lang: str) -> dict[str, tuple[str, ...]]:
    with catalogue_path(lang).open("rb") as fh:
        cat = read_po(fh, locale=lang)
    out = {}
    for message in cat:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        out[key] = (message.string,) if isinstance(message.string, str) else tuple(message.string)
    return out


def english_words(text: str) -> bool:
    """Whether a message has English prose in it (beyond placeholders, tags, commands and codes)."""
    text = re.sub(r"\{\w+\}|<[^>]+>|/\w+|[A-Z0-9-]{4,}|YYYY-MM-DD|DD\.MM\.YYYY|IANA|QR|Telegram|\w+/\w+", "", text)
    return re.search(r"[A-Za-z]{3,}", text) is not None


def test_the_extractor_finds_the_keys():
    keys = used_keys()
    assert len(keys) > 100
    assert "start.terms" in keys and ("points.expiring", "points.expiring_plural") in keys


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_used_in_code_is_translated(lang):
    translated = catalogue(lang)
    english = catalogue("en")
    missing, empty, untranslated, placeholders = [], [], [], []
    for key in used_keys():
        msgid = key if isinstance(key, str) else key[0]
        strings = translated.get(msgid)
        if strings is None:
            missing.append(msgid)
            continue
        if not all(s.strip() for s in strings):
            empty.append(msgid)
            continue
        if lang != "en":
            if any(english_words(s) and not CJK.search(s) for s in strings) or (
                    strings[0] == english.get(msgid, ("",))[0] and english_words(strings[0])):
                untranslated.append(msgid)
            wanted = set(PLACEHOLDER.findall(" ".join(english.get(msgid, ("",)))))
            if set(PLACEHOLDER.findall(" ".join(strings))) - wanted - {"count"}:
                placeholders.append(msgid)
    assert not missing, f"{lang}: missing {sorted(missing)}"
    assert not empty, f"{lang}: empty {sorted(empty)}"
    assert not untranslated, f"{lang}: still English {sorted(untranslated)}"
    assert not placeholders, f"{lang}: placeholders unknown to English {sorted(placeholders)}"


def test_every_refusal_has_a_member_facing_message():
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.Refusal)}
    assert len(codes) > 20
    used = used_keys()
    for lang in LANGUAGES:
        translated = catalogue(lang)
        lacking = sorted(code for code in codes if f"error.{code}" not in translated)
        assert not lacking, f"{lang}: no message for refusals {lacking}"
    assert not sorted(code for code in codes if f"error.{code}" not in used), "listed in handlers.turn"


async def test_menu_labels_are_distinct_in_every_language(chat):
    MENU = [(command.name, command.menu) for command in chat.router.declared if command.menu]  # noqa: N806

    for lang in LANGUAGES:
        labels = [catalogue(lang)[key][0] for _, key in MENU]
        assert len(set(labels)) == len(labels), lang
