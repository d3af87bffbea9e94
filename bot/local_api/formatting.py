"""Turn Telegram ``parse_mode`` text into plain text plus entities, the way the Bot API does.

Telegram never stores markup: it parses HTML / MarkdownV2 / Markdown into plain ``text`` and a list
of ``MessageEntity`` objects whose offsets and lengths count UTF-16 code units.  Bots that send
broken markup (an unescaped ``<`` in a user's name, a ``.`` in MarkdownV2) get
``400 Bad Request: can't parse entities: ...`` from the real server, so the local server does the
same: that is one of the bugs it exists to catch before production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EntityParseError",
    "auto_entities",
    "parse_text",
    "utf16_len",
]


class EntityParseError(ValueError):
    """Raised when marked-up text cannot be parsed; the message is Telegram's description tail."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram uses for entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(src: str, index: int) -> int:
    # Telegram reports parse errors at UTF-8 byte offsets of the source text.
    return len(src[:index].encode("utf-8"))


@dataclass
class _Open:
    """An entity that has started but not yet ended while parsing."""

    kind: str
    start: int  # UTF-16 offset in the output text
    src_index: int
    extra: dict[str, Any]
    tag: str = ""


class _Out:
    """Accumulates output text while tracking its UTF-16 length."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.pos += utf16_len(text)

    def close(self, opened: _Open) -> None:
        length = self.pos - opened.start
        if length <= 0:
            return
        entity: dict[str, Any] = {"type": opened.kind, "offset": opened.start, "length": length}
        entity.update({k: v for k, v in opened.extra.items() if v is not None})
        self.entities.append(entity)

    def text(self) -> str:
        return "".join(self.parts)


# --------------------------------------------------------------------------------------------- HTML

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_ATTR_RE = re.compile(r"""\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{1,10});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entities(chunk: str) -> str:
    def repl(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith(("#x", "#X")):
            code = int(body[2:], 16)
        elif body.startswith("#"):
            code = int(body[1:])
        else:
            # Telegram supports only these four named entities; others stay as typed.
            return _NAMED.get(body, match.group(0))
        try:
            return chr(code)
        except (ValueError, OverflowError):
            return match.group(0)

    return _HTML_ENTITY_RE.sub(repl, chunk)


def _parse_attrs(src: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    pos = 0
    while pos < len(src):
        match = _ATTR_RE.match(src, pos)
        if not match or match.end() == pos:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if value is None:
            value = match.group(4) or ""
        attrs[match.group(1).lower()] = _decode_html_entities(value)
        pos = match.end()
    return attrs


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into ``(text, entities)`` or raise :class:`EntityParseError`."""
    out = _Out()
    stack: list[_Open] = []
    i = 0
    n = len(src)
    while i < n:
        lt = src.find("<", i)
        if lt == -1:
            out.add(_decode_html_entities(src[i:]))
            break
        out.add(_decode_html_entities(src[i:lt]))
        gt = src.find(">", lt)
        if gt == -1:
            raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(src, lt)}")
        inner = src[lt + 1 : gt]
        if inner.startswith("/"):
            name = inner[1:].strip().lower()
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(src, lt)}")
            top = stack.pop()
            if name != top.tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {_byte_offset(src, lt)}, expected "</{top.tag}>", '
                    f'found "</{name}>"'
                )
            out.close(top)
        else:
            name_match = re.match(r"[^\s/>]*", inner)
            name = (name_match.group(0) if name_match else "").lower()
            kind = _HTML_TAGS.get(name)
            if kind is None:
                raise EntityParseError(
                    f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, lt)}'
                )
            attrs = _parse_attrs(inner[len(name) :].rstrip("/"))
            extra: dict[str, Any] = {}
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(src, lt)}'
                )
            if name == "a":
                href = attrs.get("href", "")
                if not href:
                    kind = "bold_placeholder"  # an <a> without href is plain text in Telegram
                match = re.match(r"tg://user\?id=(\d+)$", href)
                if match:
                    kind = "text_mention"
                    extra["user"] = {"id": int(match.group(1)), "is_bot": False, "first_name": ""}
                else:
                    extra["url"] = href
            if name == "tg-emoji":
                extra["custom_emoji_id"] = attrs.get("emoji-id", "")
            if name == "blockquote" and "expandable" in attrs:
                kind = "expandable_blockquote"
            if name == "code" and stack and stack[-1].tag == "pre":
                language = attrs.get("class", "")
                if language.startswith("language-"):
                    stack[-1].extra["language"] = language[len("language-") :]
            stack.append(_Open(kind=kind, start=out.pos, src_index=lt, extra=extra, tag=name))
        i = gt + 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities = [e for e in out.entities if e["type"] != "bold_placeholder"]
    # A <code> nested in <pre> is one pre entity in Telegram, not two.
    pres = [(e["offset"], e["length"]) for e in entities if e["type"] == "pre"]
    entities = [e for e in entities if not (e["type"] == "code" and (e["offset"], e["length"]) in pres)]
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


# ---------------------------------------------------------------------------------------- MarkdownV2

_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}


def parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse MarkdownV2 into ``(text, entities)`` or raise :class:`EntityParseError`."""
    out = _Out()
    stack: list[_Open] = []
    quote: _Open | None = None
    i = 0
    n = len(src)

    def toggle(kind: str, at: int) -> None:
        for index in range(len(stack) - 1, -1, -1):
            if stack[index].kind == kind:
                if index != len(stack) - 1:
                    inner = stack[-1]
                    raise EntityParseError(
                        f"Can't find end of {_V2_NAMES.get(inner.kind, inner.kind)} entity at byte offset "
                        f"{_byte_offset(src, inner.src_index)}"
                    )
                out.close(stack.pop())
                return
        stack.append(_Open(kind=kind, start=out.pos, src_index=at, extra={}))

    while i < n:
        ch = src[i]
        at_line_start = i == 0 or src[i - 1] == "\n"
        if at_line_start and ch == ">":
            if quote is None:
                quote = _Open(kind="blockquote", start=out.pos, src_index=i, extra={})
            i += 1
            continue
        if at_line_start and quote is not None and ch != ">":
            # The quote ended on the previous line; drop the trailing newline from it.
            end = out.pos
            out.pos -= 1
            out.close(quote)
            out.pos = end
            quote = None
        if ch == "\\":
            if i + 1 < n and 0 < ord(src[i + 1]) < 127:
                out.add(src[i + 1])
                i += 2
                continue
            out.add(ch)
            i += 1
            continue
        if ch == "`":
            if src.startswith("```", i):
                end = src.find("```", i + 3)
                if end == -1:
                    raise EntityParseError(
                        f"Can't find end of Pre entity at byte offset {_byte_offset(src, i)}"
                    )
                body = src[i + 3 : end]
                language = None
                newline = body.find("\n")
                if newline != -1 and re.fullmatch(r"[A-Za-z0-9_+#.-]*", body[:newline]):
                    language = body[:newline] or None
                    body = body[newline + 1 :]
                body = re.sub(r"\\([`\\])", r"\1", body)
                opened = _Open(kind="pre", start=out.pos, src_index=i, extra={"language": language})
                out.add(body)
                out.close(opened)
                i = end + 3
                continue
            end = i + 1
            while end < n and src[end] != "`":
                end += 2 if src[end] == "\\" else 1
            if end >= n:
                raise EntityParseError(f"Can't find end of Code entity at byte offset {_byte_offset(src, i)}")
            opened = _Open(kind="code", start=out.pos, src_index=i, extra={})
            out.add(re.sub(r"\\([`\\])", r"\1", src[i + 1 : end]))
            out.close(opened)
            i = end + 1
            continue
        if ch == "*":
            toggle("bold", i)
            i += 1
            continue
        if ch == "_":
            if src.startswith("__", i):
                toggle("underline", i)
                i += 2
            else:
                toggle("italic", i)
                i += 1
            continue
        if ch == "~":
            toggle("strikethrough", i)
            i += 1
            continue
        if ch == "|" and src.startswith("||", i):
            toggle("spoiler", i)
            i += 2
            continue
        if ch == "[":
            stack.append(_Open(kind="text_link", start=out.pos, src_index=i, extra={}))
            i += 1
            continue
        if ch == "!" and src.startswith("![", i):
            stack.append(_Open(kind="custom_emoji", start=out.pos, src_index=i, extra={}))
            i += 2
            continue
        if ch == "]" and stack and stack[-1].kind in ("text_link", "custom_emoji"):
            opened = stack.pop()
            if not src.startswith("(", i + 1):
                raise EntityParseError(
                    f"Can't find end of {_V2_NAMES.get(opened.kind, 'TextUrl')} entity at byte offset "
                    f"{_byte_offset(src, opened.src_index)}"
                )
            end = i + 2
            url_chars: list[str] = []
            while end < n and src[end] != ")":
                if src[end] == "\\" and end + 1 < n:
                    url_chars.append(src[end + 1])
                    end += 2
                    continue
                url_chars.append(src[end])
                end += 1
            if end >= n:
                raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(src, i + 1)}")
            url = "".join(url_chars)
            if opened.kind == "custom_emoji":
                match = re.match(r"tg://emoji\?id=(\d+)$", url)
                opened.extra["custom_emoji_id"] = match.group(1) if match else url
            else:
                match = re.match(r"tg://user\?id=(\d+)$", url)
                if match:
                    opened.kind = "text_mention"
                    opened.extra["user"] = {"id": int(match.group(1)), "is_bot": False, "first_name": ""}
                else:
                    opened.extra["url"] = url
            out.close(opened)
            i = end + 1
            continue
        if ch in _V2_RESERVED:
            raise EntityParseError(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        out.add(ch)
        i += 1
    if stack:
        opened = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_V2_NAMES.get(opened.kind, opened.kind)} entity at byte offset "
            f"{_byte_offset(src, opened.src_index)}"
        )
    if quote is not None:
        out.close(quote)
    out.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), out.entities


# ------------------------------------------------------------------------------------ legacy Markdown

_V1_MARKERS = {"*": "bold", "_": "italic"}


def parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse legacy Markdown (no nesting) into ``(text, entities)`` or raise :class:`EntityParseError`."""
    out = _Out()
    i = 0
    n = len(src)
    while i < n:
        ch = src[i]
        if ch == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if ch in _V1_MARKERS:
            end = src.find(ch, i + 1)
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            opened = _Open(kind=_V1_MARKERS[ch], start=out.pos, src_index=i, extra={})
            out.add(src[i + 1 : end])
            out.close(opened)
            i = end + 1
            continue
        if ch == "`":
            fence = "```" if src.startswith("```", i) else "`"
            end = src.find(fence, i + len(fence))
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            body = src[i + len(fence) : end]
            extra: dict[str, Any] = {}
            if fence == "```":
                newline = body.find("\n")
                if newline != -1 and re.fullmatch(r"[A-Za-z0-9_+#.-]+", body[:newline]):
                    extra["language"] = body[:newline]
                    body = body[newline + 1 :]
            opened = _Open(kind="pre" if fence == "```" else "code", start=out.pos, src_index=i, extra=extra)
            out.add(body)
            out.close(opened)
            i = end + len(fence)
            continue
        if ch == "[":
            close = src.find("]", i + 1)
            if close != -1 and src.startswith("(", close + 1):
                end = src.find(")", close + 2)
                if end != -1:
                    opened = _Open(
                        kind="text_link", start=out.pos, src_index=i, extra={"url": src[close + 2 : end]}
                    )
                    out.add(src[i + 1 : close])
                    out.close(opened)
                    i = end + 1
                    continue
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
            )
        out.add(ch)
        i += 1
    return out.text(), out.entities


# ----------------------------------------------------------------------------------------- dispatch

_BOT_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?")
_AUTO_RE = re.compile(
    r"(?P<url>\bhttps?://[^\s<>\"']+)"
    r"|(?P<email>\b[\w.+-]+@[\w-]+\.[\w.-]+\b)"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{4,32}\b)"
    r"|(?P<hashtag>(?<![\w#])#\w+)"
    r"|(?P<bot_command>(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?\b)"
)


def auto_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram detects by itself in plain text: commands, URLs, e-mails, mentions, hashtags."""
    entities: list[dict[str, Any]] = []
    for match in _AUTO_RE.finditer(text):
        kind = match.lastgroup or "url"
        if kind == "url":
            # Trailing punctuation is not part of a URL in Telegram clients.
            value = match.group(0).rstrip(".,;:!?)")
            start = match.start()
        else:
            value = match.group(0)
            start = match.start()
        entities.append({"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(value)})
    return entities


def parse_text(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Return plain text and entities for ``text`` sent with ``parse_mode`` or explicit ``entities``.

    Explicit ``entities`` win over ``parse_mode`` exactly as in the Bot API.  Auto-detected entities
    (URLs, commands, ...) are added where no explicit entity covers them.
    """
    if entities:
        result = [dict(e) for e in entities]
        plain = text
    else:
        mode = (parse_mode or "").strip().lower()
        if mode == "html":
            plain, result = parse_html(text)
        elif mode == "markdownv2":
            plain, result = parse_markdown_v2(text)
        elif mode == "markdown":
            plain, result = parse_markdown(text)
        elif mode == "":
            plain, result = text, []
        else:
            raise EntityParseError(f"Unsupported parse_mode {parse_mode!r}")
    covered = [(e["offset"], e["offset"] + e["length"]) for e in result]
    for entity in auto_entities(plain):
        start, end = entity["offset"], entity["offset"] + entity["length"]
        if not any(s < end and start < e for s, e in covered):
            result.append(entity)
    result.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, result


def is_bot_command_start(text: str) -> bool:
    """True when ``text`` starts with a bot command such as ``/start`` or ``/start@MyBot``."""
    return bool(_BOT_COMMAND_RE.match(text))
