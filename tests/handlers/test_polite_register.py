"""One register per language: the Chinese texts address the member (and staff) with 您, never 你.

Covers every translated message in the zh_Hans and zh_Hant catalogues and every shipped message
template, so a new text written in the familiar register fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parents[2] / "locales"
CHINESE = ("zh_Hans", "zh_Hant")
FAMILIAR = "你"


def _msgstrs(language: str) -> list[tuple[str, str]]:
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle)
    found = []
    for message in catalogue:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        found += [(str(message.id if isinstance(message.id, str) else message.id[0]), s) for s in strings if s]
    return found


@pytest.mark.parametrize("language", CHINESE)
def test_catalogue_uses_the_polite_you_only(language: str) -> None:
    strings = _msgstrs(language)
    assert len(strings) > 100, "the catalogue was read"
    familiar = [(msgid, text) for msgid, text in strings if FAMILIAR in text]
    assert familiar == [], f"{language}: use 您, not 你, in {[msgid for msgid, _ in familiar]}"


@pytest.mark.parametrize("language", CHINESE)
def test_message_templates_use_the_polite_you_only(language: str) -> None:
    templates = sorted((LOCALES / language / "templates").glob("*.j2"))
    assert len(templates) >= 10, "the shipped templates were found"
    familiar = [path.name for path in templates if FAMILIAR in path.read_text(encoding="utf-8")]
    assert familiar == [], f"{language}: use 您, not 你, in {familiar}"

