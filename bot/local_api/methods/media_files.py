"""Files: sending photos, documents and other media (uploads, ``attach://``, file ids, URLs), media
groups, and getFile."""

from __future__ import annotations

import mimetypes
import time
from functools import partial
from typing import Any

from ..errors import ApiError, bad
from ..hub import Hub
from ..images import image_size, make_png
from ..markup import markup_param
from ..params import MAX_PHOTO_BYTES, MAX_UPLOAD_BYTES, Params, Upload, caption_content
from ..records import BotRec, FileRec
from .common import deliver, send_target, thread_and_reply
from .table import method

__all__ = ["input_file"]

# Each single-file send method and the media kind it carries.
MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendSticker": "sticker",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAudio": "audio",
    "sendAnimation": "animation",
}


def input_file(hub: Hub, params: Params, name: str, kind: str) -> FileRec:
    """Resolve an InputFile parameter: an upload, ``attach://``, a known file_id or a URL."""
    value = params.raw.get(name)
    upload = params.files.get(name)
    if upload is None and isinstance(value, str) and value.startswith("attach://"):
        upload = params.files.get(value[len("attach://") :])
        if upload is None:
            raise bad(f'can\'t find attached file "{value}"')
    if upload is not None:
        return store_upload(hub, upload, kind, params)
    if value is None or value == "":
        raise bad(f"there is no {kind} in the request")
    if not isinstance(value, str):
        raise bad(f"wrong type of the {kind} parameter")
    if value.startswith(("http://", "https://")):
        # No internet here: stand in a placeholder so the flow goes on; the URL is kept.
        placeholder = make_png(8, 8) if kind in ("photo", "sticker") else b"placeholder for " + value.encode()
        file_name = value.rstrip("/").rsplit("/", 1)[-1] or None
        return hub.world.add_file(placeholder, kind, file_name=file_name, source_url=value)
    record = hub.world.files.get(value)
    if record is None:
        raise bad("wrong file identifier/HTTP URL specified")
    if (record.kind == "photo") != (kind == "photo"):
        raise bad("type of file mismatch")
    return record


def store_upload(hub: Hub, upload: Upload, kind: str, params: Params) -> FileRec:
    """Keep an uploaded file after checking its size (and, for a photo, that it is an image)."""
    data = upload.data
    if not data:
        raise bad("file must be non-empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    if kind == "photo":
        if len(data) > MAX_PHOTO_BYTES:
            raise bad("file is too big")
        if image_size(data) is None:
            raise bad("IMAGE_PROCESS_FAILED")
    mime = None
    if upload.filename:
        mime = mimetypes.guess_type(upload.filename)[0]
    if mime is None and upload.content_type and upload.content_type != "application/octet-stream":
        mime = upload.content_type
    file_name = upload.filename if kind in ("document", "audio", "video", "animation") else None
    return hub.world.add_file(
        data,
        kind,
        file_name=file_name,
        mime_type=mime,
        width=params.integer("width"),
        height=params.integer("height"),
        duration=params.integer("duration"),
    )


async def send_media(hub: Hub, bot: BotRec, params: Params, *, kind: str, name: str) -> Any:
    """A single-file send method (sendPhoto, sendDocument, ...): ``kind`` is the media it carries."""
    chat = send_target(hub, params)
    placement = thread_and_reply(hub, chat, params)
    markup = markup_param(params)
    caption = caption_content(params) if kind != "sticker" else {}
    record = input_file(hub, params, kind, kind)
    media = record.media()
    if kind == "sticker" and params.string("emoji"):
        media["emoji"] = params.string("emoji")
    content: dict[str, Any] = {kind: media, **caption}
    if params.flag("has_spoiler"):
        content["has_media_spoiler"] = True
    msg = deliver(
        hub,
        bot,
        chat,
        params,
        content,
        method=name,
        raw_text=params.string("caption"),
        thread_and_reply_to=placement,
        markup=markup,
    )
    return hub.world.message_api(msg)


for _name, _kind in MEDIA_METHODS.items():
    method(_name, limited=True)(partial(send_media, kind=_kind, name=_name))


@method("sendMediaGroup", limited=True)
async def send_media_group(hub: Hub, bot: BotRec, params: Params) -> Any:
    chat = send_target(hub, params)
    media = params.json("media")
    if not isinstance(media, list) or not 2 <= len(media) <= 10:
        raise bad("wrong number of messages in the media group")
    placement = thread_and_reply(hub, chat, params)
    prepared: list[dict[str, Any]] = []
    for item in media:
        if not isinstance(item, dict) or item.get("type") not in ("photo", "document", "video", "audio"):
            raise bad("can't parse InputMedia")
        kind = str(item["type"])
        item_params = Params(
            {
                "media": item.get("media"),
                "caption": item.get("caption"),
                "parse_mode": item.get("parse_mode"),
                "caption_entities": item.get("caption_entities"),
            },
            params.files,
        )
        record = input_file(hub, item_params, "media", kind)
        prepared.append({kind: record.media(), **caption_content(item_params)})
    group_id = str(13_000_000_000_000_000 + int(time.time() * 1000))
    results = []
    for content in prepared:
        msg = deliver(
            hub,
            bot,
            chat,
            params,
            content,
            method="sendMediaGroup",
            thread_and_reply_to=placement,
            markup={},
            media_group_id=group_id,
        )
        results.append(hub.world.message_api(msg))
    return results


@method("getFile")
async def get_file(hub: Hub, bot: BotRec, params: Params) -> Any:
    record = hub.world.files.get(params.string("file_id") or "")
    if record is None:
        raise bad("invalid file_id")
    return record.api_file()
