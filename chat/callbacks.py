"""Callback data for inline buttons: a compact, versioned, validated format shared by handlers and scheduler.

A button's data looks like ``1:rw:c:12:req8`` -- version, action, verb, then the verb's arguments.
Telegram limits callback data to 64 bytes and hands back whatever a client sends, so `decode` trusts
nothing: anything malformed, of another version, too long, of an unknown action or verb, or with
arguments of the wrong shape decodes to None. Integers come back as ints, and only within what
their use can hold: ids fit the store's 32-bit integer columns, pages and scores their small ranges,
so a forged number can never reach a query as something the column cannot take.

To add a button family, add its action to `ACTIONS` (verb -> argument kinds); both sides then agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loyalbot.chat.limits import CALLBACK_DATA_BYTES

VERSION = "1"
ID_MAX = 2**31 - 1  # the largest value of the store's (32-bit) integer id columns


@dataclass(frozen=True)
class Whole:
    """A whole number from `low` to `high`, written without sign or leading zeros; decodes to an int."""

    low: int
    high: int
    text: bool = False  # True: decodes to its digits as a str (for buttons whose handlers read a str)


INT = Whole(0, ID_MAX)  # a row id (32-bit)
ID_TEXT = Whole(0, ID_MAX, text=True)  # a row id, handed over as its digits
PAGE = Whole(0, 9_999)  # a page of a list
SCORE = Whole(0, 100)  # a rating or survey score: bounded here, its scale (1-5, 0-10) checked where it is used
TOKEN = "token"  # letters, digits, '_' and '-', 1-32 characters

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_WHOLE_RE = re.compile(r"^(0|[1-9][0-9]{0,9})$")  # 0 .. 9,999,999,999: enough digits for any bound above

Kind = str | Whole | tuple[str, ...]

# action -> verb -> the kinds of the arguments after the verb (a tuple of str means one of those words).
ACTIONS: dict[str, dict[str, tuple[Kind, ...]]] = {
    # language choice (registration and /language)
    "lg": {"en": (), "zh_Hans": (), "zh_Hant": ()},
    # registration steps: terms yes/no/again, marketing yes/no, skip birthday
    "rg": {"ty": (), "tn": (), "tr": (), "my": (), "mn": (), "bs": ()},
    # rewards: page, show one, confirm(reward, request id), cancel
    "rw": {"p": (PAGE,), "s": (INT,), "c": (INT, TOKEN), "x": ()},
    # coupons: active list, used/expired list, one coupon's QR (by id; by code from a campaign's message)
    "cp": {"a": (), "o": (), "q": (INT,), "c": (TOKEN,)},
    # feedback: rating, skip rating
    "fb": {"r": (SCORE,), "s": ()},
    # settings: toggle kind, quiet hours (preset or menu), time zone (index, menu, type), birthday, language, show
    "st": {"n": (("care", "reminders", "surveys", "offers", "activity"),), "q": (TOKEN,), "z": (TOKEN,), "b": (), "l": (),
           "v": ()},
    # privacy: export, ask to erase, erase confirmed (one-time token from the confirmation), cancel
    "pv": {"x": (), "e": (), "y": (TOKEN,), "n": ()},
    # staff at the counter: use coupon (code) / cancel / check one of a member's coupons (code)
    "us": {"y": (TOKEN,), "n": (), "c": (TOKEN,)},
    # staff at the counter: /award confirm / cancel (the pending award's one-time token), undo (purchase id)
    "aw": {"y": (TOKEN,), "n": (TOKEN,), "u": (INT,)},
    # staff at the counter: show one member of a list of matches (member id); a staff member joins as a member
    "sm": {"s": (INT,), "j": ()},
    # surveys: answer(survey id, score), skip the comment(survey id)
    "sv": {"a": (INT, SCORE), "s": (INT,)},
    # support handoff (handlers/support/): take/hand back/close/end a conversation (its id), other verbs a token
    "sp": {verb: (ID_TEXT,) for verb in ("t", "c", "h", "x")} | {verb: (TOKEN,) for verb in ("r", "b")}
          | {"m": (), "o": ()},
}


@dataclass(frozen=True)
class Callback:
    """A decoded button press: the action and its arguments (the verb first)."""

    action: str
    args: tuple[str | int, ...]

    @property
    def verb(self) -> str:
        return str(self.args[0]) if self.args else ""


def _valid_arg(kind: Kind, raw: str) -> str | int | None:
    if isinstance(kind, tuple):
        return raw if raw in kind else None
    if isinstance(kind, Whole):
        if not _WHOLE_RE.match(raw) or not kind.low <= int(raw) <= kind.high:
            return None
        return raw if kind.text else int(raw)
    if kind == TOKEN:
        return raw if _TOKEN_RE.match(raw) else None
    return None


def decode(data: object) -> Callback | None:
    """The callback in `data`, or None when it is not one we made (malformed, stale version, forged)."""
    if not isinstance(data, str) or not data or len(data.encode("utf-8")) > CALLBACK_DATA_BYTES:
        return None
    parts = data.split(":")
    if len(parts) < 3 or parts[0] != VERSION:
        return None
    action, verb, raw_args = parts[1], parts[2], parts[3:]
    verbs = ACTIONS.get(action)
    if verbs is None or verb not in verbs:
        return None
    kinds = verbs[verb]
    if len(raw_args) != len(kinds):
        return None
    args: list[str | int] = [verb]
    for kind, raw in zip(kinds, raw_args, strict=True):
        value = _valid_arg(kind, raw)
        if value is None:
            return None
        args.append(value)
    return Callback(action=action, args=tuple(args))


def encode(action: str, verb: str, *args: str | int) -> str:
    """Callback data for a button; raises ValueError if it would not decode back to the same thing."""
    data = ":".join([VERSION, action, verb, *(str(a) for a in args)])
    decoded = decode(data)
    if decoded is None or decoded.args[1:] != tuple(args):
        raise ValueError(f"cannot encode callback {action}:{verb} with {len(args)} argument(s)")
    return data


def survey_answer(survey_id: int, score: int) -> str:
    """The data of a survey answer button (the scheduler builds the buttons, handlers/surveys.py reads them)."""
    return encode("sv", "a", survey_id, score)


__all__ = ["ACTIONS", "ID_MAX", "ID_TEXT", "INT", "PAGE", "SCORE", "TOKEN", "VERSION", "Callback", "Whole",
           "decode", "encode", "survey_answer"]
