"""What an update wrote is found again, however long its key: a long key is remembered and looked up alike."""

from __future__ import annotations

import sqlalchemy as sa

from loyalbot.loyalty import Loyalty
from loyalbot.storage.inbox import EFFECT_KEY_LENGTH, effect_key, effect_of, remember_effect
from loyalbot.storage.models import Feedback

LONG = "feedback:" + "9" * 120 + ":abcdef012345"


async def test_an_effect_under_a_long_key_is_found_again_and_two_long_keys_stay_apart(db) -> None:
    other = LONG.replace(":abcdef012345", ":fedcba543210")  # the same first 96 characters
    async with db.connection() as conn:
        await remember_effect(conn, LONG, {"feedback": 1})
        await remember_effect(conn, other, {"feedback": 2})
    async with db.connection() as conn:
        assert await effect_of(conn, LONG) == {"feedback": 1}
        assert await effect_of(conn, other) == {"feedback": 2}
    assert len(effect_key(LONG)) == EFFECT_KEY_LENGTH
    assert effect_key("award:17:abc") == "award:17:abc", "a key that fits is stored as it is"


async def test_feedback_from_an_update_with_a_long_key_handled_twice_is_stored_once(loyalty: Loyalty, db) -> None:
    member = await loyalty.register_member(telegram_id=501, terms_accepted=True)
    update_key = "7" * 150
    first = await loyalty.record_feedback(member.id, "The coffee was cold", rating=2, update_key=update_key)
    again = await loyalty.record_feedback(member.id, "The coffee was cold", rating=2, update_key=update_key)
    assert again.id == first.id
    async with db.read() as s:
        stored = (await s.execute(sa.select(sa.func.count()).select_from(Feedback))).scalar_one()
    assert stored == 1
