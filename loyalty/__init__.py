"""The loyalty programme's rules and services: earn, tiers, expiry, rewards, coupons, surveys, privacy."""

from loyalty.errors import Refusal
from loyalty.programme import Programme, ProgrammeError, load_programme
from loyalty.service import Loyalty

__all__ = ["Loyalty", "Programme", "ProgrammeError", "Refusal", "load_programme"]
