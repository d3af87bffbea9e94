"""Talking to a person: members ask for help, staff take the conversation over in the staff forum group.

The wing, by concept:

- member.py: the member's side in their private chat (/support, "Talk to a person", /end, Reopen, and
  what they write while a person is waited for or holds the talk);
- staff.py: the staff side in the conversation's topic (take, hand back, close, note, block, unblock,
  what the holder writes and edits);
- desk.py: the topics themselves (made and made again, the summary card kept true, notices), the
  member's waiting notices, CSAT after a close, feedback to the group, and erasure of topics;
- relay.py: the staff group's paced queue (20 a minute, merging, retries, recreated topics), the one
  place that posts into the group, and `retrying`, the one RetryAfter loop;
- config.py: what operators tune, and business hours;
- service.py: `SupportService` and `register_support`, which wire the rest together;
- queue.py: /queue, the waiting conversations in the order to serve them (tier priority, then wait).

The state machine is `loyalty.handoff.HandoffStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalbot.handlers.support import queue
from loyalbot.handlers.support.config import DAY_NAMES, BusinessHours, SupportConfig, split_text
from loyalbot.handlers.support.service import SupportService, register_support

if TYPE_CHECKING:
    from loyalbot.handlers.router import Router


def register(router: Router) -> None:
    """The `module.register(router)` form used by handlers.router.build_router."""
    register_support(router, router.ctx)
    queue.register(router)


__all__ = ["DAY_NAMES", "BusinessHours", "SupportConfig", "SupportService", "register", "register_support",
           "split_text"]
