"""Support conversations: the list with state, member, agent, opened, first response and resolution times;
a conversation's page with its state changes (handoff_events) and the messages relayed (handoff_messages)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loyalbot.console.members_queries import (
    conversation_counts,
    conversation_file,
    conversations_page,
    page_number,
)
from loyalbot.console.pages.members import record_id
from loyalbot.console.pages.web import N_, ConsoleRefusal, Deps, Operator, render

router = APIRouter()
STATES = ("bot", "waiting", "human", "closed")
WORDS = (N_("bot"), N_("waiting"), N_("human"))
# What each kind of relayed message is, as the page labels it (handoff_messages.direction).
DIRECTIONS = {"in": N_("from the member"), "out": N_("from staff"), "note": N_("staff note"),
              "card": N_("summary card"), "post": N_("bot post")}


@router.get("/console/support", include_in_schema=False)
async def conversations(request: Request, console: Deps, _who: Operator) -> Response:
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    page = await conversations_page(console.db, state=state or None,
                                    number=page_number(request.query_params.get("page", "1")))
    return render(request, "support/list.html", page=page, state=state, states=STATES,
                  counts=await conversation_counts(console.db))


@router.get("/console/support/{conversation_id}", include_in_schema=False)
async def conversation(request: Request, console: Deps, _who: Operator, conversation_id: str) -> Response:
    found = await conversation_file(console.db, record_id(conversation_id),
                                    number=page_number(request.query_params.get("page", "1")))
    if found is None:
        raise ConsoleRefusal(404, "There is no such conversation.")
    return render(request, "support/conversation.html", file=found, c=found.row.conversation, directions=DIRECTIONS)
