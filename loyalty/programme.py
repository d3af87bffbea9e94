"""The programme's rules (tiers, earning rates, expiry policy, rewards), loaded from a TOML file."""

from __future__ import annotations

import calendar
import functools
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import Any
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


class Expiry(_Strict):
    months: int = Field(default=12, ge=1, le=120)


class TierLevel(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    threshold: Decimal = Field(ge=0)
    multiplier: Decimal = Field(default=Decimal(1), gt=0, le=100)
    names: dict[str, str] = {}
    benefits: dict[str, str] = {}  # language -> what the tier brings, in a sentence or two

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


class Programme(_Strict):
    """A loyalty programme: what earns points, how tiers work, what points buy."""

    programme: Settings = Settings()
    earning: Earning = Earning()
    expiry: Expiry = Expiry()
    counter: Counter = Counter()
    tiers: Tiers
    rewards: tuple[RewardSpec, ...] = ()

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
        if self.programme.default_language not in self.programme.languages:
            raise PydanticCustomError("default_language", "default_language must be one of languages")
        return self

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

    def lot_expiry(self, earned_at: datetime) -> datetime:
        """When points earned at `earned_at` expire: the end of the month `expiry.months` later (local time)."""
        local = earned_at.astimezone(self.zone)
        month_index = local.month - 1 + self.expiry.months
        year, month = local.year + month_index // 12, month_index % 12 + 1
        last_day = calendar.monthrange(year, month)[1]
        end = datetime.combine(date(year, month, last_day), time(23, 59, 59), tzinfo=self.zone)
        return end.astimezone(UTC)

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
