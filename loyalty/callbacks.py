"""Callback data for inline buttons: a compact, versioned, validated format shared by handlers and scheduler.

A button's data looks like ``1:rw:c:12:req8`` -- version, action, verb, then the verb's arguments.
Telegram limits callback data to 64 bytes and hands back whatever a client sends, so `decode` trusts
nothing: anything malformed, of another version, too long, of an unknown action or verb, or with
arguments of the wrong shape decodes to None. Integers come back as ints.

To add a button family, add its action to `ACTIONS` (verb -> argument kinds); both sides then agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION = "1"
MAX_BYTES = 64  # Telegram's limit for callback_data

INT = "int"  # a non-negative whole number, at most 12 digits
TOKEN = "token"  # letters, digits, '_' and '-', 1-32 characters

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_INT_RE = re.compile(r"^[0-9]{1,12}$")

# action -> verb -> the kinds of the arguments after the verb (a tuple of str means one of those words).
ACTIONS: dict[str, dict[str, tuple[str | tuple[str, ...], ...]]] = {
    # language choice (registration and /language)
    "lg": {"en": (), "zh_Hans": (), "zh_Hant": ()},
    # registration steps: terms yes/no/again, marketing yes/no, skip birthday
    "rg": {"ty": (), "tn": (), "tr": (), "my": (), "mn": (), "bs": ()},
    # rewards: page, show one, confirm(reward, request id), cancel
    "rw": {"p": (INT,), "s": (INT,), "c": (INT, TOKEN), "x": ()},
    # coupons: active list, used/expired list, one coupon's QR
    "cp": {"a": (), "o": (), "q": (INT,)},
    # feedback: rating, skip rating
    "fb": {"r": (INT,), "s": ()},
    # settings: toggle kind, quiet hours (preset or menu), time zone (index, menu, type), birthday, language, show
    "st": {"n": (("care", "reminders", "surveys", "offers", "activity"),), "q": (TOKEN,), "z": (TOKEN,), "b": (), "l": (),
           "v": ()},
    # privacy: export, ask to erase, erase confirmed (one-time token from the confirmation), cancel
    "pv": {"x": (), "e": (), "y": (TOKEN,), "n": ()},
    # staff at the counter: use coupon (code) / cancel
    "us": {"y": (TOKEN,), "n": ()},
    # surveys: answer(survey id, score), skip the comment(survey id)
    "sv": {"a": (INT, INT), "s": (INT,)},
    # support handoff (handlers/support.py): verb + up to two ids/tokens
    "sp": {verb: (TOKEN,) for verb in ("t", "c", "r", "b", "h", "x")} | {"m": (), "o": ()},
}


@dataclass(frozen=True)
class Callback:
    """A decoded button press: the action and its arguments (the verb first)."""

    action: str
    args: tuple[str | int, ...]

    @property
    def verb(self) -> str:
        return str(self.args[0]) if self.args else ""


def _valid_arg(kind: str | tuple[str, ...], raw: str) -> str | int | None:
    if isinstance(kind, tuple):
        return raw if raw in kind else None
    if kind == INT:
        return int(raw) if _INT_RE.match(raw) else None
    if kind == TOKEN:
        return raw if _TOKEN_RE.match(raw) else None
    return None


def decode(data: object) -> Callback | None:
    """The callback in `data`, or None when it is not one we made (malformed, stale version, forged)."""
    if not isinstance(data, str) or not data or len(data.encode("utf-8")) > MAX_BYTES:
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


__all__ = ["ACTIONS", "INT", "MAX_BYTES", "TOKEN", "VERSION", "Callback", "decode", "encode", "survey_answer"]
