"""The support wing wired together: one `SupportService` per bot, registered on the router.

`register_support(router, ctx)` puts the service in ``ctx.services.handoff`` (the app starts and
stops it) and its feedback poster in ``ctx.services.feedback_sink``, answers /support, /end and the
member's support buttons (member.py), the staff group (staff.py), and listens for erasures so the
member's staff topics are cleared (desk.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loyalbot.chat.i18n import N_, Translator
from loyalbot.handlers.support.config import SupportConfig
from loyalbot.handlers.support.desk import Desk
from loyalbot.handlers.support.member import MemberSide
from loyalbot.handlers.support.relay import StaffRelay
from loyalbot.handlers.support.staff import StaffSide
from loyalbot.loyalty.events import LoyaltyEvent, MemberErased
from loyalbot.loyalty.handoff import HandoffStore
from loyalbot.storage.models import Member

if TYPE_CHECKING:
    from loyalbot.handlers.context import Context
    from loyalbot.handlers.router import Router

log = logging.getLogger(__name__)


@dataclass
class SupportService:
    """Support handoff for one bot: the member's side, the staff's side and the desk they share."""

    desk: Desk
    member: MemberSide
    staff: StaffSide
    _ticker: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(cls, ctx: Context, config: SupportConfig, *, router: Router | None = None,
               relay_clock: Callable[[], float] | None = None,
               relay_sleep: Callable[[float], Awaitable[None]] | None = None) -> SupportService:
        desk = Desk(ctx=ctx, config=config, store=HandoffStore(ctx.loyalty.db), relay_clock=relay_clock,
                    relay_sleep=relay_sleep)
        return cls(desk=desk, member=MemberSide(desk, router), staff=StaffSide(desk))

    @property
    def config(self) -> SupportConfig:
        return self.desk.config

    @property
    def store(self) -> HandoffStore:
        return self.desk.store

    @property
    def relay(self) -> StaffRelay | None:
        """The staff group's queue, once anything was queued (None before)."""
        return self.desk.relay_started

    def member_tr(self, member: Member) -> Translator:
        return self.desk.member_tr(member)

    def next_opening(self, now: datetime) -> datetime | None:
        return self.desk.next_opening(now)

    async def tick(self, now: datetime) -> int:
        return await self.desk.tick(now)

    async def resume(self, *, now: datetime) -> int:
        return await self.desk.resume(now=now)

    async def forget_erased(self) -> int:
        return await self.desk.forget_erased()

    async def feedback_sink(self, member: Member, feedback: Any) -> None:
        await self.desk.feedback_sink(member, feedback)

    # --- lifetime -----------------------------------------------------------------------------------------

    async def start(self, *, now: datetime | None = None) -> None:
        """Resend member messages that were stored but never relayed, and start the waiting-notice ticker."""
        if not self.desk.staffed:
            return
        await self.desk.resume(now=now or self.desk.ctx.clock())
        await self.desk.forget_erased()
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def stop(self) -> None:
        """Stop the ticker and send what the relay still holds (call before the runtime closes its bot)."""
        await self.desk.settle()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if (relay := self.desk.relay_started) is not None:
            await relay.stop()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            try:
                await self.desk.tick(self.desk.ctx.clock())
            except Exception:  # the next tick tries again
                log.exception("support tick failed")

    async def on_loyalty_event(self, event: LoyaltyEvent) -> None:
        """The events listener: a member who erased their data leaves nothing in the staff group."""
        if isinstance(event, MemberErased) and self.desk.staffed:
            self.desk.spawn(self.desk.forget_member(event.member_id, announce=True))


def register_support(router: Router, ctx: Context, config: SupportConfig | None = None, *,
                     relay_clock: Callable[[], float] | None = None,
                     relay_sleep: Callable[[float], Awaitable[None]] | None = None) -> SupportService:
    """Wire support into the router; the service goes to ctx.services.handoff (and its feedback poster
    to ctx.services.feedback_sink). `config` defaults to ctx.services.support_config or ChatConfig."""
    chosen = config or ctx.services.support_config or SupportConfig.from_chat_config(ctx.config)
    service = SupportService.create(ctx, chosen, router=router, relay_clock=relay_clock, relay_sleep=relay_sleep)
    ctx.services.handoff = service
    ctx.services.feedback_sink = service.feedback_sink
    ctx.loyalty.subscribe(service.on_loyalty_event)
    router.command("support", service.member.ask, help=N_("help.support"), menu=N_("menu.support"))
    router.command("end", service.member.end)
    router.callback("sp", service.member.pressed)
    router.interceptor(service.member.intercept)
    router.group(service.staff.on_group)
    return service


__all__ = ["SupportService", "register_support"]
