"""The feedback inbox: what members wrote, new / answered / closed; a reply goes to the member through the bot.

The reply is written to the outbox by `loyalty.reply_to_feedback` (key ``feedback-reply:<id>``), so the
dispatcher sends it at Telegram's limits and never twice, however often the form is posted.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from loyalbot.console.members_queries import feedback_counts, feedback_item, feedback_page, page_number
from loyalbot.console.pages.members import actor_of, record_id
from loyalbot.console.pages.web import N_, ConsoleRefusal, Csrf, Deps, Operator, gettext, render
from loyalbot.loyalty import errors
from loyalbot.loyalty.feedback import MAX_REPLY_CHARS, STATES, check_reply

log = logging.getLogger(__name__)
router = APIRouter()

DONE = {"replied": N_("Your reply is on its way to the member."),
        "already": N_("This feedback was already answered; nothing more was sent."),
        "closed": N_("The feedback was closed.")}
WORDS = (N_("new"), N_("answered"), N_("closed"))


@router.get("/console/feedback", include_in_schema=False)
async def inbox(request: Request, console: Deps, _who: Operator) -> Response:
    state = request.query_params.get("state", "new")
    state = state if state in STATES else ""
    rating_text = request.query_params.get("rating", "")
    rating = int(rating_text) if rating_text in {"1", "2", "3", "4", "5"} else None
    page = await feedback_page(console.db, state=state or None, rating=rating,
                               number=page_number(request.query_params.get("page", "1")))
    return render(request, "feedback/inbox.html", page=page, state=state, rating=rating,
                  counts=await feedback_counts(console.db), states=STATES)


async def _item_page(request: Request, console: Deps, feedback_id: int, *, status: int = 200,
                     text: str = "", error: str | None = None) -> Response:
    found = await feedback_item(console.db, feedback_id)
    if found is None:
        raise ConsoleRefusal(404, "There is no such feedback.")
    feedback, member, reply = found
    who = request.state.operator
    code = request.query_params.get("done")
    return render(request, "feedback/item.html", status=status, f=feedback, member=member, reply=reply, text=text,
                  error=error, limit=MAX_REPLY_CHARS,
                  flash=gettext(who.language, DONE[code]) if code in DONE else None)


@router.get("/console/feedback/{feedback_id}", include_in_schema=False)
async def item(request: Request, console: Deps, _who: Operator, feedback_id: str) -> Response:
    return await _item_page(request, console, record_id(feedback_id))


@router.post("/console/feedback/{feedback_id}/reply", include_in_schema=False)
async def reply(request: Request, console: Deps, who: Csrf, feedback_id: str) -> Response:
    fid = record_id(feedback_id)
    form = await request.form()
    raw = form.get("text")
    text = raw if isinstance(raw, str) else ""
    try:
        check_reply(text)
        done = await console.loyalty.reply_to_feedback(fid, text, actor=actor_of(who))
    except errors.InvalidReply:
        log.info("console: refused a feedback reply (empty, too long or control characters)")
        error = gettext(who.language, "Write the reply as plain text of at most %(limit)s characters.",
                        limit=f"{MAX_REPLY_CHARS:,}")
        return await _item_page(request, console, fid, status=422, text=text[:MAX_REPLY_CHARS], error=error)
    except errors.UnknownFeedback:
        raise ConsoleRefusal(404, "There is no such feedback.") from None
    except errors.FeedbackClosed:
        raise ConsoleRefusal(409, "This feedback was closed; it takes no reply.") from None
    except errors.MemberErased:
        raise ConsoleRefusal(410, "This member was erased; nothing can be sent to them.") from None
    return RedirectResponse(f"/console/feedback/{fid}?done={'already' if done.repeated else 'replied'}",
                            status_code=303)


@router.post("/console/feedback/{feedback_id}/close", include_in_schema=False)
async def close(request: Request, console: Deps, who: Csrf, feedback_id: str) -> Response:
    fid = record_id(feedback_id)
    try:
        await console.loyalty.close_feedback(fid, actor=actor_of(who))
    except errors.UnknownFeedback:
        raise ConsoleRefusal(404, "There is no such feedback.") from None
    return RedirectResponse(f"/console/feedback/{fid}?done=closed", status_code=303)
