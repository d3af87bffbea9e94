"""The loyalty programme's rules and services: earn, tiers, expiry, rewards, coupons, surveys, privacy."""

from loyalbot.loyalty.errors import Refusal
from loyalbot.loyalty.programme import Programme, ProgrammeError, load_programme
from loyalbot.loyalty.service import Loyalty

__all__ = ["Loyalty", "Programme", "ProgrammeError", "Refusal", "load_programme"]
