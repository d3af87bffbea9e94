"""Settings from the environment (prefix LOYALBOT_) and an optional .env file.

A wrong value stops start-up with a message that names the setting and what is wrong.
Secrets (the bot token, the webhook secret, the console password) are SecretStr: never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalbot.chat.languages import LANGUAGES
from loyalbot.chat.limits import MESSAGES_PER_SECOND, PAID_MESSAGES_PER_SECOND
from loyalbot.loyalty.programme import Programme, ProgrammeError, load_programme
from loyalbot.storage.clock import find_zone
from loyalbot.storage.db import DEFAULT_URL, DbUrlError, normalise_url

TELEGRAM_API = "https://api.telegram.org"


class SettingsError(ValueError):
    """A setting has a value loyalbot cannot start with."""


class Settings(BaseSettings):
    """Everything an operator configures through the environment."""

    model_config = SettingsConfigDict(env_prefix="LOYALBOT_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_URL
    bot_token: SecretStr | None = None
    telegram_api_url: str = TELEGRAM_API
    framework: Literal["aiogram", "ptb"] = "aiogram"
    programme: Path | None = None
    timezone: str = "Europe/Amsterdam"
    locale: str = "en"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "127.0.0.1:8443"
    staff_group_id: int | None = None
    redis_url: str | None = None
    instance: str | None = Field(default=None, max_length=64)  # this replica's name in the update inbox
    # Seconds an update claimed by a process that died stays its own before another replica may take it.
    inbox_lease: float = Field(default=30.0, ge=5, le=3600)
    # Seconds a stop (SIGTERM) waits for the updates being handled before it gives them back.
    drain_seconds: float = Field(default=10.0, ge=0, le=600)
    # Peers (nginx) whose X-Forwarded-For is believed: addresses or networks, comma-separated.
    trusted_proxies: str = "127.0.0.1,::1"
    console_password: SecretStr | None = None  # makes the first console admin, `operator`, if none exists
    console_secret: SecretStr | None = None  # signs the console's cookies; unset: a key kept in the store
    console_secure_cookies: bool = False  # set when the console is served over HTTPS (behind nginx with TLS)
    console_host: str = "127.0.0.1"
    console_port: int | None = Field(default=8081, ge=-1, le=65535)  # -1 turns the HTTP side off
    send_rate: float = Field(default=30.0, gt=0, le=1000)
    paid_broadcast: bool = False
    # Seconds a points or tier message waits so that a burst of purchases is told in one message.
    notice_delay: float = Field(default=30.0, ge=0, le=3600)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object a line (bot/logs.py)
    # Seconds the planner lease lasts: a dead planner's replica is replaced within about this long.
    planner_lease: float = Field(default=10.0, ge=2, le=600)
    # http: limits of the HTTP side (console/api.py HttpLimits)
    api_max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=64 * 1024 * 1024)
    http_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    auth_failure_limit: int = Field(default=10, ge=1, le=10_000)
    auth_failure_window: float = Field(default=300.0, gt=0, le=86_400)
    lookup_limit: int = Field(default=60, ge=1, le=1_000_000)
    lookup_window: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return normalise_url(value)
        except DbUrlError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if find_zone(value) is None:
            raise ValueError(f"unknown time zone {value!r}")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _api(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, the root of a Bot API server")
        return value.rstrip("/")

    def load_programme(self) -> Programme:
        try:
            return load_programme(self.programme)
        except ProgrammeError as exc:
            raise SettingsError(f"LOYALBOT_PROGRAMME: {exc}") from None

    def shop_timezone(self, programme: Programme) -> str:
        """The shop's time zone: LOYALBOT_TIMEZONE when it is set, else the programme's."""
        return self.timezone if "timezone" in self.model_fields_set else programme.programme.timezone

    def bot_rate(self) -> float:
        """Messages a second the bot sends in all: `send_rate`, at most 30 (1000 with paid broadcasts)."""
        return min(self.send_rate, PAID_MESSAGES_PER_SECOND if self.paid_broadcast else MESSAGES_PER_SECOND)

    def token(self) -> str:
        if self.bot_token is None or not self.bot_token.get_secret_value().strip():
            raise SettingsError("LOYALBOT_BOT_TOKEN: not set; ask @BotFather for a token")
        return self.bot_token.get_secret_value().strip()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise SettingsError naming each bad setting and what is wrong with it."""
    settings = read_settings(**overrides)
    settings.load_programme()
    return settings


def read_settings(**overrides: object) -> Settings:
    """The settings' values alone, checked (the programme file is not read): SettingsError otherwise."""
    try:
        # The overrides are command-line options by field name; pydantic checks their values right here.
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"LOYALBOT_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SettingsError(problems) from None
    return settings


def bot_id_of(token: str) -> int:
    """The bot's Telegram id: the digits before the colon of its token (not a secret)."""
    head = token.split(":", 1)[0]
    return int(head) if head.isdigit() else 0
