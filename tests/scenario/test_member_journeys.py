"""What a member does after joining: card, points, rewards, coupons, feedback, settings, privacy."""

from __future__ import annotations

import json

import pytest

from loyalbot.chat.i18n import Translator
from loyalbot.handlers.config import ChatConfig
from tests.scenario.driver import Chat, Person

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_card_arrives_as_a_photo_with_the_member_number(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    await ann.send("/card")
    member = await ann.record()
    assert ann.last_message["kind"] == "photo"
    assert member.member_no in ann.last_text
    png = await chat.tg.file_bytes(ann.last_message["file_id"])
    assert png.startswith(b"\x89PNG")


async def test_points_show_the_balance_and_when_points_expire(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await ann.send("/points")
    member = await ann.record()
    summary = await chat.loyalty.points_summary(member.id)
    upcoming = summary.next_expiry
    assert upcoming is not None
    tr = Translator(member.language, timezone=member.timezone, format_locale=ChatConfig().format_locales["en"])
    assert "500" in ann.last_text
    assert tr.n("points.expiring", "points.expiring_plural", upcoming.points, date=upcoming.expires_at) in ann.last_text


async def _choose(ann: Person, title: str) -> None:
    await ann.send("/rewards")
    await ann.press(title)


async def test_redeeming_a_reward_gives_a_coupon_photo(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await _choose(ann, "coffee")
    await ann.press("Confirm")
    assert any(m["kind"] == "photo" for m in ann.replies), "the coupon's QR code arrives"
    assert await chat.coupons_of(ann) == 1
    assert (await ann.record()).balance == 350


async def test_double_tap_on_confirm_gives_one_coupon(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await _choose(ann, "coffee")
    message_id, data = await ann.find_button("Confirm")
    await ann.press_data(message_id, data)
    await ann.press_data(message_id, data)
    assert ann.last_toast  # the second tap is told it was already done
    assert await chat.coupons_of(ann) == 1
    assert (await ann.record()).balance == 350


async def test_not_enough_points_is_explained_and_changes_nothing(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=100)
    await _choose(ann, "coffee")
    assert ann.last_toast is not None
    assert Translator("en").t("rewards.why_points", short=50) in ann.last_toast
    assert await chat.coupons_of(ann) == 0
    assert (await ann.record()).balance == 100


async def test_tier_too_low_is_explained_and_changes_nothing(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=5000)
    await _choose(ann, "beans")
    silver = chat.loyalty.programme.tier("silver").names.get("en", "silver")
    assert ann.last_toast is not None
    assert Translator("en").t("rewards.why_tier", tier=silver) in ann.last_toast
    assert await chat.coupons_of(ann) == 0
    assert (await ann.record()).balance == 5000


async def test_out_of_stock_between_choosing_and_confirming(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=5000)
    await _choose(ann, "tote")
    tote = next(r for r in await chat.loyalty.catalogue((await ann.record()).id) if r.reward.code == "tote")
    await chat.loyalty.set_reward_stock(tote.reward.id, 0)
    await ann.press("Confirm")
    assert ann.saw(Translator("en").t("error.out_of_stock"))
    assert await chat.coupons_of(ann) == 0
    assert (await ann.record()).balance == 5000


async def test_coupons_list_shows_active_coupons(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    await ann.send("/coupons")
    assert ann.last_text_contains(Translator("en").t("coupons.none")[:20])
    await _choose(ann, "coffee")
    await ann.press("Confirm")
    await ann.send("/coupons")
    coupon, _ = (await chat.loyalty.coupons_of((await ann.record()).id))[0]
    shown = [m for m in ann.replies if m["kind"] == "photo"]
    assert len(shown) == 1, "the one active coupon is shown with its QR code"
    assert coupon.code in shown[0]["caption"]


async def _coupon_code(chat: Chat, ann: Person) -> str:
    await _choose(ann, "coffee")
    await ann.press("Confirm")
    coupon, _ = (await chat.loyalty.coupons_of((await ann.record()).id))[0]
    return coupon.code


async def test_staff_uses_a_coupon_once(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    code = await _coupon_code(chat, ann)
    sam = await chat.staff("Sam")
    await sam.send(f"/use {code}")
    assert code in sam.last_text
    await sam.press("Confirm")
    assert await chat.coupons_of(ann) == 0
    assert await chat.coupons_of(ann, status="used") == 1
    await sam.send(f"/use {code}")
    assert sam.saw(Translator("en").t("error.coupon_used"))


async def test_an_expired_coupon_is_refused_at_the_counter(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    code = await _coupon_code(chat, ann)
    sam = await chat.staff("Sam")
    chat.clock.advance(days=31)
    await sam.send(f"/use {code}")
    assert sam.saw(Translator("en").t("error.coupon_expired"))
    assert await chat.coupons_of(ann, status="used") == 0


async def test_a_member_cannot_use_coupons_even_with_a_forged_button(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=500)
    code = await _coupon_code(chat, ann)
    eve = await chat.registered_member("Eve")
    await eve.send(f"/use {code}")
    assert await chat.coupons_of(ann) == 1
    any_message = (await eve.transcript())[-1]["message_id"]
    from loyalbot.chat.callbacks import encode

    await eve.press_data(any_message, encode("us", "y", code))
    assert eve.saw(Translator("en").t("error.not_permitted"))
    assert await chat.coupons_of(ann) == 1


async def test_feedback_is_recorded_with_its_rating(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    await ann.send("/feedback")
    await ann.send("The oat latte was lovely")
    await ann.press("⭐⭐⭐⭐")
    assert ann.saw("Thank you")
    exported = await chat.loyalty.export_member_data((await ann.record()).id)
    assert "The oat latte was lovely" in json.dumps(exported, ensure_ascii=False, default=str)


async def test_settings_toggle_a_notification_kind(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    await ann.send("/settings")
    _, label, data = next(b for b in await ann.buttons() if b[1].startswith("✅") and ":offers" not in b[2])
    await ann.press(label)
    kind = data.split(":")[-1]
    assert (await ann.record()).notify.get(kind) is False, f"{kind} is switched off"
    assert ann.last_text_contains(Translator("en").t("settings.saved"))
    assert any(text == "⬜" + label[1:] for _, text, _ in await ann.buttons()), "the button shows it is off"


async def test_language_switch_changes_the_replies(chat: Chat) -> None:
    ann = await chat.registered_member("Ann")
    await ann.send("/language")
    await ann.press("简体中文")
    assert (await ann.record()).language == "zh_Hans"
    assert ann.saw(Translator("zh_Hans").t("language.changed"))
    await ann.send("/points")
    assert Translator("zh_Hans").t("points.none_yet") in ann.last_text or "积分" in ann.last_text


async def test_export_arrives_as_a_json_document(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=200)
    await ann.send("/privacy")
    await ann.press(Translator("en").t("privacy.button_export"))
    assert ann.last_message["kind"] == "document"
    data = json.loads(await chat.tg.file_bytes(ann.last_message["file_id"]))
    assert (await ann.record()).member_no in json.dumps(data)


async def test_erase_forgets_the_member_after_confirmation(chat: Chat) -> None:
    ann = await chat.registered_member("Ann", points=200)
    await ann.send("/privacy")
    await ann.press(Translator("en").t("privacy.button_erase"))
    assert (await ann.record()).status != "erased"
    await ann.press(Translator("en").t("privacy.button_erase_yes"))
    member = await chat.loyalty.member_by_telegram(ann.id)
    assert member is None or member.status == "erased"
    await ann.send("/points")
    assert ann.saw("/start")


async def test_a_reward_with_a_picture_shows_it_before_the_question(chat: Chat) -> None:
    import io

    from PIL import Image

    from loyalbot.loyalty.programme import RewardSpec

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), "teal").save(buffer, "PNG")
    name = await chat.loyalty.programmes.store_image(buffer.getvalue(), author="console:mia")
    cake = RewardSpec(code="cake", cost=90, image=name,
                      titles={"en": "Cake", "zh_Hans": "蛋糕", "zh_Hant": "蛋糕"})
    programme = chat.loyalty.programme
    await chat.loyalty.save_programme(programme.model_copy(update={"rewards": (*programme.rewards, cake)}),
                                      author="console:mia", based_on=chat.loyalty.in_force.version)
    ann = await chat.registered_member("Ann", points=500)
    await ann.send("/rewards")
    await ann.press("Next")  # the new reward comes last in the catalogue
    await ann.press("Cake")
    photo = next(m for m in ann.replies if m["kind"] == "photo")
    assert await chat.tg.file_bytes(photo["file_id"]) == buffer.getvalue()
    assert ann.last_message["kind"] == "text" and "Cake" in ann.last_text  # the question, with its buttons
    await ann.press("Confirm")
    assert await chat.coupons_of(ann) == 1
    assert (await ann.record()).balance == 410
