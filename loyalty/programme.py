"""The programme's rules (tiers, earning rates, expiry policy, rewards), loaded from a TOML file."""

from __future__ import annotations

import calendar
import functools
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from loyalbot.chat.languages import LANGUAGES
from loyalbot.storage.clock import as_utc, find_zone

DEFAULT_PROGRAMME = Path(str(resources.files("loyalbot.loyalty"))) / "default_programme.toml"  # package data


# The year stored for a birthday given without one (the column is a date): a leap year, so 29 February
# can be kept, and one no living member was born in; the chat shows such a birthday without a year.
BIRTHDAY_YEAR_UNKNOWN = 1904


class ProgrammeError(ValueError):
    """The programme file cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _texts(value: dict[str, str], limit: int) -> dict[str, str]:
    """Texts per language: known languages only, no control characters (a new line allowed), at most `limit`."""
    for lang, text in value.items():
        if lang not in LANGUAGES:
            raise PydanticCustomError("unknown_language", "unknown language {lang}", {"lang": lang[:16]})
        if any(ord(ch) < 32 and ch != "\n" or 0x7F <= ord(ch) < 0xA0 for ch in text):
            raise PydanticCustomError("control_characters", "control characters are not allowed ({lang})",
                                      {"lang": lang})
        if len(text) > limit:
            raise PydanticCustomError("text_too_long", "at most {limit} characters ({lang})",
                                      {"limit": limit, "lang": lang})
    return {lang: text.strip() for lang, text in value.items() if text.strip()}


class Settings(_Strict):
    name: str = "Loyalty programme"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    timezone: str = "UTC"
    languages: tuple[str, ...] = LANGUAGES
    default_language: str = "en"
    # ISO 3166 country of the shop: the default region of phone numbers typed at the counter without
    # a +country code. Unset: the country of `timezone` (Europe/Amsterdam -> NL; none for UTC).
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # Whether a member must give the year of their birthday; if not, a birthday typed without one
    # (6月15日, 15 June) is kept with the year BIRTHDAY_YEAR_UNKNOWN and shown without a year.
    birthday_year_required: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if find_zone(value) is None:
            raise ValueError(f"unknown time zone {value!r}")
        return value


class Earning(_Strict):
    points_per_unit: Decimal = Field(default=Decimal(1), gt=0)
    birthday_month_multiplier: Decimal = Field(default=Decimal(1), ge=1)
    welcome_bonus: int = Field(default=0, ge=0, le=1_000_000)  # points given once, on joining


class Counter(_Strict):
    """Staff at the counter: the largest amount one /award takes, how long a confirmation and an undo
    stay open, and how many look-ups (member number, phone, name, coupon code) a staff member may make."""

    max_amount: Decimal = Field(default=Decimal(10000), gt=0, le=1_000_000)
    confirm_minutes: int = Field(default=10, ge=1, le=24 * 60)
    undo_minutes: int = Field(default=5, ge=0, le=24 * 60)
    lookups_per_minute: int = Field(default=30, ge=1, le=10_000)


class Campaigns(_Strict):
    """Frequency caps: at most this many marketing messages (kinds that obey the "offers" setting) a member
    gets per local day and per ISO week of their own time zone; None: no cap. Transactional, care,
    reminder and survey messages are counted apart (not at all)."""

    max_per_day: int | None = Field(default=None, ge=1, le=100)
    max_per_week: int | None = Field(default=None, ge=1, le=500)

    @model_validator(mode="after")
    def _week_holds_a_day(self) -> Campaigns:
        if self.max_per_day is not None and self.max_per_week is not None and self.max_per_week < self.max_per_day:
            raise PydanticCustomError("week_below_day", "max_per_week ({week}) must be at least max_per_day ({day})",
                                      {"week": self.max_per_week, "day": self.max_per_day})
        return self


class Expiry(_Strict):
    """When earned points expire (loyalty/expiry.py applies it).

    rolling: a lot expires at the end of the month `months` after it was earned (a tier's
    `points_validity_months`, when it has one, takes the place of `months`);
    yearly_reset: every lot expires at the next `reset_month_day` (MM-DD, shop time), when
    `carry_over_pct` of what is left is carried into a lot that lasts until the reset after;
    activity_extends: as rolling, and every purchase moves each open lot's expiry to at least
    `extend_months` after the purchase."""

    months: int = Field(default=12, ge=1, le=120)
    mode: Literal["rolling", "yearly_reset", "activity_extends"] = "rolling"
    carry_over_pct: int = Field(default=0, ge=0, le=100)
    reset_month_day: str = Field(default="01-01", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    extend_months: int = Field(default=12, ge=1, le=120)

    @field_validator("reset_month_day")
    @classmethod
    def _real_day(cls, value: str) -> str:
        month, day = (int(part) for part in value.split("-"))
        if day > calendar.monthrange(2001, month)[1]:  # a day every year has (no 29 February)
            raise PydanticCustomError("reset_day", "{value} is not a day of every year", {"value": value})
        return value


class Pending(_Strict):
    """Points of a purchase wait `return_window_days` (0: none) before they can be spent (loyalty/pending.py);
    with `tier_spend_waits` the purchase's amount counts towards a tier only from then on too."""

    return_window_days: int = Field(default=0, ge=0, le=365)
    tier_spend_waits: bool = False


class ReferralMilestone(_Strict):
    """What a member gets once `friends` of the people they referred have bought: points or a reward's coupon."""

    friends: int = Field(ge=1, le=10_000)
    points: int | None = Field(default=None, ge=1, le=1_000_000)
    reward: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,63}$")

    @model_validator(mode="after")
    def _one_gift(self) -> ReferralMilestone:
        if (self.points is None) == (self.reward is None):
            raise PydanticCustomError("milestone_gift", "a milestone gives either points or a reward")
        return self


class Referrals(_Strict):
    """Members bring friends (loyalty/referrals.py): both are rewarded once the friend's first purchase of at
    least `min_purchase` has cleared the return window; milestones reward the referrer for so many friends."""

    enabled: bool = True
    referrer_points: int = Field(default=100, ge=0, le=1_000_000)
    friend_points: int = Field(default=50, ge=0, le=1_000_000)
    min_purchase: Decimal = Field(default=Decimal(1), ge=0)
    milestones: tuple[ReferralMilestone, ...] = ()

    @model_validator(mode="after")
    def _milestones(self) -> Referrals:
        counts = [m.friends for m in self.milestones]
        if len(set(counts)) != len(counts):
            raise PydanticCustomError("duplicate_milestone", "two milestones for the same number of friends")
        return self


class Lifecycle(_Strict):
    """Where a member stands in their life with the programme, from the days since their last purchase (or, never
    having bought, since they joined) and their purchases in the RFM window; scored nightly at `score_at`.

    new: joined within `new_days`; then by days without a purchase: at_risk after `at_risk_days`, dormant after
    `dormant_days`, churned after `churned_days`; otherwise repeat (at least `repeat_purchases` purchases in the
    window) or active. A member who never bought is at_risk once they are no longer new.
    """

    new_days: int = Field(default=30, ge=1, le=3650)
    at_risk_days: int = Field(default=45, ge=1, le=3650)
    dormant_days: int = Field(default=90, ge=1, le=3650)
    churned_days: int = Field(default=365, ge=1, le=3650)
    repeat_purchases: int = Field(default=2, ge=2, le=1000)
    window_days: int = Field(default=365, ge=7, le=3650)  # frequency and monetary scores count this far back
    score_at: str = Field(default="03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # programme time, nightly

    @model_validator(mode="after")
    def _ordered(self) -> Lifecycle:
        days = (("at_risk_days", self.at_risk_days), ("dormant_days", self.dormant_days),
                ("churned_days", self.churned_days))
        for (low_name, low), (high_name, high) in zip(days, days[1:], strict=False):
            if low >= high:
                raise PydanticCustomError("lifecycle_order", "{low} ({a}) must be fewer days than {high} ({b})",
                                          {"low": low_name, "a": low, "high": high_name, "b": high})
        return self


class TierLevel(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    threshold: Decimal = Field(ge=0)
    multiplier: Decimal = Field(default=Decimal(1), gt=0, le=100)
    names: dict[str, str] = {}
    benefits: dict[str, str] = {}  # language -> what the tier brings, in a sentence or two
    discount_pct: Decimal = Field(default=Decimal(0), ge=0, lt=100)  # standing discount the counter gives
    birthday_gift: str | None = None  # code of the reward whose coupon the member gets on their birthday
    support_priority: int = Field(default=0, ge=0, le=100)  # higher: served first in the support queue
    points_validity_months: int | None = Field(default=None, ge=1, le=120)  # None: expiry.months

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 32)

    @field_validator("benefits")
    @classmethod
    def _benefits(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 500)


class Tiers(_Strict):
    window_months: int = Field(default=12, ge=1, le=60)
    levels: tuple[TierLevel, ...]

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        if not self.levels:
            raise PydanticCustomError("no_tiers", "at least one tier is needed")
        if self.levels[0].threshold != 0:
            raise PydanticCustomError("first_threshold", "the first tier's threshold must be 0, so that every "
                                                         "member has a tier", {"tier": self.levels[0].code})
        codes = [level.code for level in self.levels]
        if len(set(codes)) != len(codes):
            raise PydanticCustomError("duplicate_tier", "tier codes must be unique")
        for lower, upper in zip(self.levels, self.levels[1:], strict=False):
            if upper.threshold <= lower.threshold:
                raise PydanticCustomError(
                    "tiers_overlap", "tier thresholds overlap: {tier} ({threshold}) must be above {lower} "
                                     "({lower_threshold})",
                    {"tier": upper.code, "threshold": str(upper.threshold), "lower": lower.code,
                     "lower_threshold": str(lower.threshold)})
        return self


class RewardSpec(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    cost: int = Field(gt=0)
    titles: dict[str, str]
    descriptions: dict[str, str] = {}
    stock: int | None = Field(default=None, ge=0)
    per_member_limit: int | None = Field(default=None, ge=1)
    validity_days: int = Field(default=30, ge=1, le=3650)
    min_tier: str | None = None
    active_from: datetime | None = None
    active_until: datetime | None = None
    active: bool = True  # False: kept (coupons reference it) but not offered
    image: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # sha256 of an image in the store

    @field_validator("titles")
    @classmethod
    def _titles(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 64)

    @field_validator("descriptions")
    @classmethod
    def _descriptions(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 500)

    @model_validator(mode="after")
    def _window(self) -> RewardSpec:
        if self.active_from and self.active_until and as_utc(self.active_until) <= as_utc(self.active_from):
            raise PydanticCustomError("window_order", "active_until must be after active_from")
        return self


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class BonusRule(_Strict):
    """A bonus campaign (loyalty/bonuses.py applies it): a multiplier within a window, a member day (a weekday,
    every week), or a spend threshold reached within a period. Times without a zone are the shop's."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: Literal["multiplier", "threshold", "member_day"]
    titles: dict[str, str]
    starts: datetime | None = None
    ends: datetime | None = None
    tiers: tuple[str, ...] = ()  # empty: every tier
    stores: tuple[str, ...] = ()  # empty: every store (multiplier, member_day)
    categories: tuple[str, ...] = ()  # empty: the whole purchase; else only items of these categories
    weekday: Weekday | None = None  # member_day
    factor: Decimal | None = Field(default=None, gt=1, le=10)  # multiplier, member_day: x2 = 2
    points: int | None = Field(default=None, gt=0, le=1_000_000)  # threshold: the bonus points
    threshold: Decimal | None = Field(default=None, gt=0)  # threshold: spend to reach
    period: Literal["week", "month", "year"] | None = None  # threshold: once per member per period

    @field_validator("titles")
    @classmethod
    def _titles(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 64)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> BonusRule:
        needed = {"multiplier": ("factor",), "member_day": ("factor", "weekday"),
                  "threshold": ("points", "threshold", "period")}[self.kind]
        unused = {"multiplier": ("weekday", "points", "threshold", "period"),
                  "member_day": ("points", "threshold", "period"),
                  "threshold": ("factor", "weekday", "stores", "categories")}[self.kind]
        for name in needed:
            if getattr(self, name) is None:
                raise PydanticCustomError("bonus_field_missing", "bonus {bonus} ({kind}) needs {field}",
                                          {"bonus": self.code, "kind": self.kind, "field": name})
        for name in unused:
            if getattr(self, name) not in (None, ()):
                raise PydanticCustomError("bonus_field_unused", "bonus {bonus} ({kind}) does not take {field}",
                                          {"bonus": self.code, "kind": self.kind, "field": name})
        if self.starts and self.ends and _naive_utc(self.ends) <= _naive_utc(self.starts):
            raise PydanticCustomError("bonus_window", "bonus {bonus}: ends must be after starts",
                                      {"bonus": self.code})
        return self


class StampCardSpec(_Strict):
    """A stamp card (loyalty/stamps.py): a stamp per qualifying item bought (by SKU or category) or given at the
    counter; the `stamps_needed`-th issues the reward's coupon and the card starts again."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    titles: dict[str, str]
    stamps_needed: int = Field(ge=2, le=50)
    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    reward: str  # the reward whose coupon the last stamp issues
    validity_days: int | None = Field(default=None, ge=1, le=3650)  # the coupon's; None: the reward's

    @field_validator("titles")
    @classmethod
    def _titles(cls, value: dict[str, str]) -> dict[str, str]:
        return _texts(value, 64)

    @model_validator(mode="after")
    def _qualifies(self) -> StampCardSpec:
        if not self.skus and not self.categories:
            raise PydanticCustomError("stamp_card_items", "stamp card {card} needs skus or categories",
                                      {"card": self.code})
        return self


def _naive_utc(value: datetime) -> datetime:
    """For comparing two window ends that are both naive or both aware."""
    return value.replace(tzinfo=None) if value.tzinfo is None else as_utc(value).replace(tzinfo=None)


class Programme(_Strict):
    """A loyalty programme: what earns points, how tiers work, what points buy."""

    programme: Settings = Settings()
    earning: Earning = Earning()
    expiry: Expiry = Expiry()
    counter: Counter = Counter()
    lifecycle: Lifecycle = Lifecycle()
    pending: Pending = Pending()
    referrals: Referrals = Referrals()
    campaigns: Campaigns = Campaigns()
    tiers: Tiers
    rewards: tuple[RewardSpec, ...] = ()
    bonuses: tuple[BonusRule, ...] = ()
    stamp_cards: tuple[StampCardSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Programme:
        codes = {level.code for level in self.tiers.levels}
        seen: set[str] = set()
        for reward in self.rewards:
            if reward.code in seen:
                raise PydanticCustomError("duplicate_reward", "reward code {reward} appears twice",
                                          {"reward": reward.code})
            seen.add(reward.code)
            if reward.min_tier is not None and reward.min_tier not in codes:
                raise PydanticCustomError("unknown_tier", "reward {reward} names unknown tier {tier}",
                                          {"reward": reward.code, "tier": reward.min_tier})
            if self.programme.default_language not in reward.titles:
                raise PydanticCustomError("title_missing", "reward {reward} has no title in {lang}",
                                          {"reward": reward.code, "lang": self.programme.default_language})
        for milestone in self.referrals.milestones:
            if milestone.reward is not None and milestone.reward not in seen:
                raise PydanticCustomError("unknown_reward", "referral milestone names unknown reward {reward}",
                                          {"reward": milestone.reward})
        if self.programme.default_language not in self.programme.languages:
            raise PydanticCustomError("default_language", "default_language must be one of languages")
        self._rules_consistent(codes, seen)
        return self

    def _rules_consistent(self, tiers: set[str], rewards: set[str]) -> None:
        """Bonuses, stamp cards and tier benefits name tiers and rewards that exist, each code once."""
        lang = self.programme.default_language
        for level in self.tiers.levels:
            if level.birthday_gift is not None and level.birthday_gift not in rewards:
                raise PydanticCustomError("unknown_reward", "tier {tier}: birthday_gift names unknown reward "
                                          "{reward}", {"tier": level.code, "reward": level.birthday_gift})
        for kind, rules in (("bonus", self.bonuses), ("stamp card", self.stamp_cards)):
            codes = [rule.code for rule in rules]
            if len(set(codes)) != len(codes):
                raise PydanticCustomError("duplicate_code", "{kind} codes must be unique", {"kind": kind})
            for rule in rules:
                if lang not in rule.titles:
                    raise PydanticCustomError("title_missing", "{kind} {code} has no title in {lang}",
                                              {"kind": kind, "code": rule.code, "lang": lang})
        for bonus in self.bonuses:
            if unknown := [tier for tier in bonus.tiers if tier not in tiers]:
                raise PydanticCustomError("unknown_tier", "bonus {bonus}: tiers names unknown tier {tier}",
                                          {"bonus": bonus.code, "tier": unknown[0]})
        for card in self.stamp_cards:
            if card.reward not in rewards:
                raise PydanticCustomError("unknown_reward", "stamp card {card}: reward names unknown reward "
                                          "{reward}", {"card": card.code, "reward": card.reward})

    # --- rules ---------------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.programme.timezone)

    @property
    def country(self) -> str | None:
        """The shop's country (ISO 3166 alpha-2): as configured, else the country of the programme's time zone."""
        return self.programme.country or country_of_zone(self.programme.timezone)

    def tier(self, code: str) -> TierLevel:
        for level in self.tiers.levels:
            if level.code == code:
                return level
        return self.tiers.levels[0]

    def tier_rank(self, code: str | None) -> int:
        for rank, level in enumerate(self.tiers.levels):
            if level.code == code:
                return rank
        return 0

    def tier_for_spend(self, spend: Decimal) -> TierLevel:
        """The highest tier whose threshold the qualifying spend reaches."""
        chosen = self.tiers.levels[0]
        for level in self.tiers.levels:
            if spend >= level.threshold:
                chosen = level
        return chosen

    def next_tier(self, code: str) -> TierLevel | None:
        levels = self.tiers.levels
        rank = self.tier_rank(code)
        return levels[rank + 1] if rank + 1 < len(levels) else None

    def points_for(self, amount: Decimal, *, tier: str, birthday_month: bool) -> int:
        """Points earned for spending `amount`: base rate x tier multiplier x birthday bonus, rounded down."""
        points = amount * self.earning.points_per_unit * self.tier(tier).multiplier
        if birthday_month:
            points *= self.earning.birthday_month_multiplier
        return int(points.to_integral_value(rounding=ROUND_FLOOR))

    def lot_expiry(self, earned_at: datetime, *, tier: str | None = None, months: int | None = None) -> datetime:
        """When points earned at `earned_at` expire: the end of the month `months` later (local time), else the
        member's tier's `points_validity_months` when that tier sets its own, else `expiry.months`; under a
        yearly reset, the next reset."""
        if self.expiry.mode == "yearly_reset":
            return self.next_reset(earned_at)
        local = earned_at.astimezone(self.zone)
        months = months or (self.tier(tier).points_validity_months if tier is not None else None) or self.expiry.months
        month_index = local.month - 1 + months
        year, month = local.year + month_index // 12, month_index % 12 + 1
        last_day = calendar.monthrange(year, month)[1]
        end = datetime.combine(date(year, month, last_day), time(23, 59, 59), tzinfo=self.zone)
        return end.astimezone(UTC)

    def next_reset(self, after: datetime) -> datetime:
        """The first yearly reset (`expiry.reset_month_day`, midnight shop time) strictly after `after`."""
        month, day = (int(part) for part in self.expiry.reset_month_day.split("-"))
        year = after.astimezone(self.zone).year
        while True:
            reset = datetime(year, month, day, tzinfo=self.zone).astimezone(UTC)
            if reset > after:
                return reset
            year += 1

    def window_start(self, now: datetime) -> datetime:
        """Start of the rolling window over which qualifying spend counts."""
        months = self.tiers.window_months
        month_index = now.month - 1 - months
        year, month = now.year + month_index // 12, month_index % 12 + 1
        day = min(now.day, calendar.monthrange(year, month)[1])
        return now.replace(year=year, month=month, day=day) + timedelta(0)


class ProgrammeInForce:
    """The programme this process runs on and its stored version, swapped whole: one attribute holds both, so
    a reader sees the old programme or the new one, never half of each. Services read it at each call."""

    __slots__ = ("_now",)

    def __init__(self, programme: Programme, version: int | None = None) -> None:
        self._now = (programme, version)

    @property
    def programme(self) -> Programme:
        return self._now[0]

    @property
    def version(self) -> int | None:
        return self._now[1]

    def swap(self, programme: Programme, version: int | None) -> None:
        self._now = (programme, version)


class FollowsProgramme:
    """A service that reads the programme in force at each call (a newer version swaps in without a restart)."""

    _in_force: ProgrammeInForce

    @property
    def programme(self) -> Programme:
        return self._in_force.programme


@functools.lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    """Time zone -> ISO country, from the IANA zone.tab that the tzdata package ships."""
    try:
        text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is a dependency
        return {}
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            if len(fields) >= 3:
                found[fields[2]] = fields[0]
    return found


def country_of_zone(zone: str) -> str | None:
    """The country an IANA time zone belongs to (e.g. Asia/Taipei -> TW), None for UTC and the like."""
    return _zone_countries().get(zone)


def load_programme(path: str | Path | None = None) -> Programme:
    """Read and check a programme file (the packaged default when `path` is None)."""
    source = Path(path) if path else DEFAULT_PROGRAMME
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProgrammeError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgrammeError(f"{source}: cannot be read: {type(exc).__name__}") from None
    return parse_programme(text, str(source))


def parse_programme(text: str, source: str = "programme") -> Programme:
    """Check a programme given as TOML text; a ProgrammeError names each field that is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgrammeError(f"{source}: not valid TOML: {exc}") from None
    return programme_from_data(raw, source)


def programme_from_data(raw: dict[str, Any], source: str = "programme") -> Programme:
    """Check a programme given as plain data (parsed TOML, or a stored version's JSON)."""
    try:
        return Programme.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'programme'}: {err['msg']}" for err in exc.errors()
        )
        raise ProgrammeError(f"{source}: {problems}") from None


def _toml_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _toml_value(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list | tuple):
        return [_toml_value(v) for v in value]
    return value


def programme_toml(programme: Programme, *, header: str = "") -> str:
    """The programme as a TOML file that `parse_programme` reads back to the same programme."""
    import tomli_w

    data = _toml_value(programme.model_dump(mode="python", exclude_none=True))
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + ("\n" if comment else "") + tomli_w.dumps(data)
