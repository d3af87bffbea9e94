"""Built-in plays: ready schedules for what loyalty programmes run first, shipped disabled.

`loyalbot campaign plays install` adds each play that is not there yet, by name, disabled; an operator reads it,
edits it if they like, and resumes it (`loyalbot schedule resume <name>`). Installing again adds only what is
missing and never touches a play already installed (enabled, edited or not). A play's offer is
``params["offer"]`` (a reward code from the programme; the offers engine issues the coupon when it sends).

The post-purchase thank-you goes out in the evening of a day with a purchase and asks the CSAT 1-5 with it
(``params["survey"] = "csat"``: the message opens a CSAT survey, answered once, reported with the other CSAT
answers); it is a broadcast, so it obeys the member's offers setting and marketing consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalbot.loyalty.programme import Programme
from loyalbot.scheduler.segments import check_segment
from loyalbot.scheduler.templates import TemplateBook
from loyalbot.storage import Db, as_utc
from loyalbot.storage.models import AuditLog, Schedule


@dataclass(frozen=True)
class Play:
    """One ready schedule: its row's fields and what it is for (shown by `plays list`)."""

    name: str
    kind: str
    about: str
    templates: dict[str, str]
    daily_time: str = "10:00"
    member_local_time: bool = True
    offset_days: int = 0
    segment: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    frequency_cap_days: int | None = None

    def offer(self) -> str | None:
        """The reward code of the play's offer, if it makes one."""
        return (self.params.get("offer") or {}).get("reward")


def _offer(reward: str, valid_days: int, remind_days_before: int = 3) -> dict[str, Any]:
    return {"reward": reward, "valid_days": valid_days, "remind_days_before": remind_days_before}


PLAYS: tuple[Play, ...] = (
    Play("play-welcome-1", "broadcast", "welcome series 1/3: the day after joining",
         {"en": "Welcome to {{ programme }}, {{ name }}! 🎉\nEvery purchase earns points; show your member card "
                "(<b>{{ member_no }}</b>) at the counter.",
          "zh_Hans": "欢迎加入{{ programme }}，{{ name }}！🎉\n每次消费都能赚积分；结账时出示会员卡（<b>{{ member_no }}</b>）即可。",
          "zh_Hant": "歡迎加入{{ programme }}，{{ name }}！🎉\n每次消費都能賺積分；結帳時出示會員卡（<b>{{ member_no }}</b>）即可。"},
         segment={"joined_within_days": 1}, frequency_cap_days=30),
    Play("play-welcome-2", "broadcast", "welcome series 2/3: three days in, how points work",
         {"en": "{{ name }}, a tip: points turn into coffee, pastries and more. You have <b>{{ points|number }}</b> "
                "so far; open Rewards to see what they buy.",
          "zh_Hans": "{{ name }}，小贴士：积分可以兑换咖啡、糕点等。您目前有 <b>{{ points|number }}</b> 积分，打开“奖励”看看能换什么。",
          "zh_Hant": "{{ name }}，小提示：積分可以兌換咖啡、糕點等。您目前有 <b>{{ points|number }}</b> 積分，打開「獎勵」看看能換什麼。"},
         segment={"joined_before_days": 3, "joined_within_days": 4}, frequency_cap_days=30),
    Play("play-welcome-3", "broadcast", "welcome series 3/3: a week in, not bought yet, a first coffee on us",
         {"en": "{{ name }}, your first coffee at {{ programme }} is on us this week: find it in your coupons. ☕",
          "zh_Hans": "{{ name }}，本周您在{{ programme }}的第一杯咖啡由我们请客，券已放进您的优惠券里。☕",
          "zh_Hant": "{{ name }}，本週您在{{ programme }}的第一杯咖啡由我們請客，券已放進您的優惠券裡。☕"},
         segment={"joined_before_days": 7, "joined_within_days": 8, "purchases": {"days": 8, "max": 0}},
         params={"offer": _offer("coffee", 7)}, frequency_cap_days=30),
    Play("play-birthday", "birthday", "birthday greeting with a coupon",
         {"en": "Happy birthday, {{ name }}! 🎂 A treat is waiting in your coupons{% if birthday_multiplier %}, and "
                "this month your points count {{ birthday_multiplier }}×{% endif %}.",
          "zh_Hans": "{{ name }}，生日快乐！🎂 您的优惠券里有一份小礼物{% if birthday_multiplier %}，本月积分 {{ birthday_multiplier }} 倍{% endif %}。",
          "zh_Hant": "{{ name }}，生日快樂！🎂 您的優惠券裡有一份小禮物{% if birthday_multiplier %}，本月積分 {{ birthday_multiplier }} 倍{% endif %}。"},
         daily_time="09:00", params={"offer": _offer("pastry", 30)}),
    Play("play-winback-90", "winback", "win-back after 90 days without a purchase, with a coupon",
         {"en": "We have missed you, {{ name }}! ☕ Here is a coffee on us, in your coupons for the next 14 days.",
          "zh_Hans": "{{ name }}，好久不见，我们很想您！☕ 送您一杯咖啡，券在您的优惠券里，14 天内有效。",
          "zh_Hant": "{{ name }}，好久不見，我們很想您！☕ 送您一杯咖啡，券在您的優惠券裡，14 天內有效。"},
         segment={"not": {"rfm": {"m": [4, 5]}}},  # the best customers get the stronger play below instead
         params={"inactive_days": 90, "offer": _offer("coffee", 14)}, frequency_cap_days=90),
    Play("play-high-value-dormant", "lifecycle_change", "high-value members who became dormant: a stronger offer",
         {"en": "{{ name }}, you are one of our favourite guests, and we have not seen you for a while. A "
                "<b>{{ tier_name }}</b> thank-you is in your coupons, for 14 days only.",
          "zh_Hans": "{{ name }}，您是我们最珍视的顾客之一，好久没见到您了。一份<b>{{ tier_name }}</b>专属谢礼已放进您的优惠券，仅限 14 天。",
          "zh_Hant": "{{ name }}，您是我們最珍視的顧客之一，好久沒見到您了。一份<b>{{ tier_name }}</b>專屬謝禮已放進您的優惠券，僅限 14 天。"},
         member_local_time=False, daily_time="", segment={"rfm": {"m": [4, 5]}},
         params={"to": "dormant", "offer": _offer("tote", 14, remind_days_before=2)}),
    Play("play-coupon-expiring", "coupon_expiry", "a coupon about to expire",
         {"en": "{{ name }}, your coupon <b>{{ coupon_title }}</b> expires on {{ coupon_expiry|date }}. Show "
                "<code>{{ coupon_code }}</code> at the counter.",
          "zh_Hans": "{{ name }}，您的优惠券<b>{{ coupon_title }}</b>将于 {{ coupon_expiry|date }} 到期。结账时出示 <code>{{ coupon_code }}</code> 即可。",
          "zh_Hant": "{{ name }}，您的優惠券<b>{{ coupon_title }}</b>將於 {{ coupon_expiry|date }} 到期。結帳時出示 <code>{{ coupon_code }}</code> 即可。"},
         offset_days=3),
    Play("play-points-expiring", "points_expiry", "points about to expire",
         {"en": "{{ name }}, <b>{{ expiring_points|number }}</b> of your points expire on {{ expiry_date|date }}. "
                "Treat yourself before then!",
          "zh_Hans": "{{ name }}，您有 <b>{{ expiring_points|number }}</b> 积分将于 {{ expiry_date|date }} 到期，别忘了及时使用！",
          "zh_Hant": "{{ name }}，您有 <b>{{ expiring_points|number }}</b> 積分將於 {{ expiry_date|date }} 到期，別忘了及時使用！"},
         offset_days=14),
    Play("play-thank-you", "broadcast", "thank-you in the evening of a day with a purchase, with the CSAT 1-5",
         {"en": "Thank you for coming by today, {{ name }}! You now have <b>{{ points|number }}</b> points.\n"
                "How did we do? Tap 1 (not good) to 5 (excellent).",
          "zh_Hans": "{{ name }}，感谢您今天的光临！您现在有 <b>{{ points|number }}</b> 积分。\n"
                     "今天的体验怎么样？请点 1（不满意）到 5（非常满意）。",
          "zh_Hant": "{{ name }}，感謝您今天的光臨！您現在有 <b>{{ points|number }}</b> 積分。\n"
                     "今天的體驗怎麼樣？請點 1（不滿意）到 5（非常滿意）。"},
         daily_time="19:00", segment={"days_since_purchase": {"max": 0}}, params={"survey": "csat"},
         frequency_cap_days=7),
    Play("play-anniversary", "anniversary", "membership anniversary",
         {"en": "{{ years }} year{% if years != 1 %}s{% endif %} with {{ programme }} today, {{ name }}! Thank you "
                "for every visit.",
          "zh_Hans": "{{ name }}，今天是您加入{{ programme }}的第 {{ years }} 周年！感谢您一路相伴。",
          "zh_Hant": "{{ name }}，今天是您加入{{ programme }}的第 {{ years }} 週年！感謝您一路相伴。"}),
)


@dataclass
class Installed:
    """What an install did: the plays added (disabled) and those already there (left alone)."""

    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    missing_rewards: dict[str, str] = field(default_factory=dict)  # play -> reward code not in the programme


def check_plays(programme: Programme, book: TemplateBook | None = None) -> None:
    """Every play's segment and templates are valid (raises SegmentProblem / TemplateProblem otherwise)."""
    book = book or TemplateBook()
    for play in PLAYS:
        check_segment(play.segment)
        book.check_all(play.templates, play.kind, default_language=programme.programme.default_language)


async def install_plays(db: Db, programme: Programme, *, actor: str, now: datetime) -> Installed:
    """Add the plays not installed yet, disabled; one transaction, so a repeat adds nothing."""
    now = as_utc(now)
    done = Installed()
    rewards = {reward.code for reward in programme.rewards}
    async with db.transaction() as tx:
        present = set((await tx.execute(sa.select(Schedule.name).where(
            Schedule.name.in_([p.name for p in PLAYS])))).scalars())
        for play in PLAYS:
            if (reward := play.offer()) and reward not in rewards:
                done.missing_rewards[play.name] = reward
            if play.name in present:
                done.present.append(play.name)
                continue
            tx.add(Schedule(name=play.name, kind=play.kind, enabled=False, daily_time=play.daily_time or None,
                            member_local_time=play.member_local_time, timezone=programme.programme.timezone,
                            offset_days=play.offset_days, segment=dict(play.segment), templates=dict(play.templates),
                            params={**play.params, "play": play.name}, frequency_cap_days=play.frequency_cap_days,
                            created_at=now, updated_at=now))
            done.added.append(play.name)
        if done.added:
            tx.add(AuditLog(actor=actor[:64], action="plays.install", details={"added": done.added}))
    return done
