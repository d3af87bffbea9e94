"""Every console string is translated into both Chinese catalogues (and the English one knows it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]


def console_ids() -> set[str]:
    found = extract_from_dir(
        ROOT / "console", method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "gettext": (2,), "NavItem": (2,), "ConsoleRefusal": (2,), "N_": None, "ngettext": (1, 2)})
    ids: set[str] = set()
    for _file, _line, message, _comments, _context in found:
        ids.add(message if isinstance(message, str) else message[0])  # a plural's key is its singular
    return ids


def test_extraction_finds_the_console_strings():
    ids = console_ids()
    assert {"Sign in", "Wrong name or password.", "Dashboard", "Only an admin may do this."} <= ids


@pytest.mark.parametrize("lang", ["en", "zh_Hans", "zh_Hant"])
def test_every_console_string_is_in_the_catalogue(lang):
    with (ROOT / "locales" / lang / "LC_MESSAGES" / "console.po").open("rb") as fh:
        catalogue = read_po(fh, locale=lang)
    missing = sorted(i for i in console_ids() if i not in catalogue or (lang != "en" and not catalogue[i].string))
    assert not missing, f"{lang} console.po lacks: {missing}"
