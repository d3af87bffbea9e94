"""The console's members pages, feedback inbox, survey results and support conversations, over HTTP on both
stores: what an operator finds and sees, what each action changes (audited, once), and what is refused."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import add_operator
from loyalbot.console.api import HttpLimits, create_app
from loyalbot.storage.models import AuditLog, Coupon, Feedback, LedgerEntry, Member, Outbox
from loyalbot.storage.throttle import SqlThrottle
from tests.console.helpers import business_snapshot
from tests.console.members_world import World, build_world

PASSWORD = "correct horse battery"


@pytest.fixture
async def world(db, loyalty) -> World:
    return await build_world(db, loyalty)


@pytest.fixture
async def app(db, loyalty):
    await add_operator(db, "mia", PASSWORD, role="operator")
    await add_operator(db, "ada", PASSWORD, role="admin")
    return create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=50))


async def _client(app, name: str):
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                            base_url="http://console")
    signed = await web.post("/console/signin", data={"name": name, "password": PASSWORD, "next": "/console"})
    assert signed.status_code == 303
    return web


@pytest.fixture
async def mia(app):
    web = await _client(app, "mia")
    yield web
    await web.aclose()


@pytest.fixture
async def ada(app):
    web = await _client(app, "ada")
    yield web
    await web.aclose()


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF token in its forms"
    return found.group(1)


async def audit(db, action: str) -> list[AuditLog]:
    async with db.read() as s:
        return list((await s.execute(sa.select(AuditLog).where(AuditLog.action == action))).scalars())


# --- search ---------------------------------------------------------------------------------------------


async def test_search_finds_a_member_by_number_phone_and_part_of_the_name(mia, world):
    for query in (world.ann_no, world.ann_no.lower(), "06 1234 5678", "+31 6 12345678", "anna", "SMITH", "th-jo"):
        page = await mia.get("/console/members", params={"q": query})
        assert page.status_code == 200
        assert f'href="/console/members/{world.ann_id}"' in page.text, query
        assert f'href="/console/members/{world.bob_id}"' not in page.text, query
    bob = await mia.get("/console/members", params={"q": "quist"})
    assert f'href="/console/members/{world.bob_id}"' in bob.text
    none = await mia.get("/console/members", params={"q": "zzzz"})
    assert "No member matches" in none.text


async def test_search_pages_through_many_matches(mia, loyalty):
    for n in range(25):
        await loyalty.register_member(telegram_id=5000 + n, first_name=f"Lee{n:02d}", terms_accepted=True)
    first = await mia.get("/console/members", params={"q": "lee"})
    second = await mia.get("/console/members", params={"q": "lee", "page": "2"})
    ids = lambda page: set(re.findall(r'href="/console/members/(\d+)"', page.text))  # noqa: E731
    assert len(ids(first)) == 20 and len(ids(second)) == 5 and not ids(first) & ids(second)
    assert 'rel="next"' in first.text and 'rel="next"' not in second.text


async def test_names_that_start_with_the_text_come_first_then_those_containing_it_across_pages(loyalty):
    for n, name in enumerate(["Dejan", "Janek", "Anja", "Bojan", "Jana"]):
        await loyalty.register_member(telegram_id=6000 + n, first_name=name, terms_accepted=True)
    names = lambda found: [m.first_name for m in found]  # noqa: E731
    assert names(await loyalty.search_members("jan", limit=10)) == ["Jana", "Janek", "Bojan", "Dejan"]
    one_by_one = [names(await loyalty.search_members("jan", offset=at, limit=1)) for at in range(5)]
    assert one_by_one == [["Jana"], ["Janek"], ["Bojan"], ["Dejan"], []]
    assert names(await loyalty.search_members("jan", offset=1, limit=2)) == ["Janek", "Bojan"]
    assert names(await loyalty.search_members("jan", offset=3, limit=3)) == ["Dejan"]
    # Two letters inside a name would match nearly everyone: only names that start with them.
    assert names(await loyalty.search_members("ja", limit=10)) == ["Jana", "Janek"]


async def test_odd_search_text_is_refused_with_a_reason(mia, world):
    page = await mia.get("/console/members", params={"q": "an\x00n"})
    assert page.status_code == 422 and 'id="q-error"' in page.text
    short = await mia.get("/console/members", params={"q": "a"})
    assert short.status_code == 422
    huge = await mia.get("/console/members", params={"q": "x" * 5000})
    assert huge.status_code == 422


# --- the member's page ----------------------------------------------------------------------------------


async def test_the_member_page_shows_every_section(mia, world):
    page = await mia.get(f"/console/members/{world.ann_id}")
    assert page.status_code == 200
    text = page.text
    for section in ("Profile", "Consent", "Points and lots", "Ledger", "Coupons", "Purchases", "Tier history",
                    "Feedback", "Survey answers", "Support conversations"):
        assert section in text, section
    assert "Annabel Smith-Jones" in text and world.ann_no in text
    assert "Programme terms" in text and "accepted" in text and "given" in text  # marketing consent
    assert "Green → Silver" in text
    assert world.coupon_code in text and "A coffee of your choice" in text
    assert "420.00 EUR" in text and "20.00 on" in text  # the purchase and its refund
    assert "The oat latte was cold &lt;b&gt;twice&lt;/b&gt;." in text  # escaped, never markup
    assert "NPS 9" in text and "Friendly staff, slow queue." in text
    assert f'/console/support/{world.conversation_id}"' in text and "1 min" in text
    assert "Expires" in text  # lots with their expiry


async def test_an_unknown_or_malformed_member_id_is_a_404_page(mia, world):
    assert (await mia.get("/console/members/999999")).status_code == 404
    bad = await mia.get("/console/members/1%20OR%201=1")
    assert bad.status_code == 404 and "There is nothing here." in bad.text


# --- adjusting points -----------------------------------------------------------------------------------


async def test_adjusting_points_needs_a_reason_and_is_audited(mia, db, loyalty, world):
    page = await mia.get(f"/console/members/{world.ann_id}")
    token = csrf_of(page)
    before = await business_snapshot(db)
    missing = await mia.post(f"/console/members/{world.ann_id}/adjust", data={"csrf": token, "points": "50"})
    assert missing.status_code == 422 and 'id="adjust-reason-error"' in missing.text
    assert 'aria-describedby="adjust-reason-error"' in missing.text and 'value="50"' in missing.text
    for bad in ("0", "abc", "1.5", "99999999999", "+-3"):
        refused = await mia.post(f"/console/members/{world.ann_id}/adjust",
                                 data={"csrf": token, "points": bad, "reason": "goodwill"})
        assert refused.status_code == 422 and 'id="adjust-points-error"' in refused.text, bad
    controls = await mia.post(f"/console/members/{world.ann_id}/adjust",
                              data={"csrf": token, "points": "5", "reason": "bad\x07bell"})
    assert controls.status_code == 422
    balance = (await loyalty.member(world.ann_id)).balance
    below = await mia.post(f"/console/members/{world.ann_id}/adjust",
                           data={"csrf": token, "points": str(-(balance + 1)), "reason": "mistake"})
    assert below.status_code == 422 and "below zero" in below.text
    assert await business_snapshot(db) == before

    done = await mia.post(f"/console/members/{world.ann_id}/adjust",
                          data={"csrf": token, "points": "+75", "reason": "Cold coffee, twice"})
    assert done.status_code == 303 and "done=adjusted" in done.headers["location"]
    assert (await loyalty.member(world.ann_id)).balance == balance + 75
    taken = await mia.post(f"/console/members/{world.ann_id}/adjust",
                           data={"csrf": token, "points": "-25", "reason": "Double credit"})
    assert taken.status_code == 303
    assert (await loyalty.member(world.ann_id)).balance == balance + 50
    entries = await audit(db, "adjust_points")
    assert [(e.actor, e.details["points"], e.details["reason"]) for e in entries] == [
        ("console:mia", 75, "Cold coffee, twice"), ("console:mia", -25, "Double credit")]
    shown = await mia.get(done.headers["location"])
    assert "The points were adjusted." in shown.text and "Cold coffee, twice" in shown.text
    assert await loyalty.ledger_check(world.ann_id) == (balance + 50,) * 3


async def test_a_post_without_its_csrf_token_changes_nothing(mia, db, world):
    before = await business_snapshot(db)
    for path, data in ((f"/console/members/{world.ann_id}/adjust", {"points": "10", "reason": "x"}),
                       (f"/console/members/{world.ann_id}/coupons/{world.coupon_id}/void", {}),
                       (f"/console/feedback/{world.feedback_id}/reply", {"text": "Hello"}),
                       (f"/console/feedback/{world.feedback_id}/close", {}),
                       (f"/console/members/{world.ann_id}/export", {})):
        forged = await mia.post(path, data=data)
        assert forged.status_code == 400 and "did not come from the console" in forged.text, path
        wrong = await mia.post(path, data={**data, "csrf": "not-the-token"})
        assert wrong.status_code == 400, path
    assert await business_snapshot(db) == before


# --- coupons --------------------------------------------------------------------------------------------


async def test_voiding_a_coupon_once_audited_and_only_the_members_own(mia, db, world):
    token = csrf_of(await mia.get(f"/console/members/{world.ann_id}"))
    other = await mia.post(f"/console/members/{world.bob_id}/coupons/{world.coupon_id}/void", data={"csrf": token})
    assert other.status_code == 404
    done = await mia.post(f"/console/members/{world.ann_id}/coupons/{world.coupon_id}/void", data={"csrf": token})
    assert done.status_code == 303 and "done=voided" in done.headers["location"]
    again = await mia.post(f"/console/members/{world.ann_id}/coupons/{world.coupon_id}/void", data={"csrf": token})
    assert again.status_code == 303 and "done=already_void" in again.headers["location"]
    async with db.read() as s:
        assert (await s.get(Coupon, world.coupon_id)).status == "void"
    assert [(e.actor, e.details["coupon"]) for e in await audit(db, "void_coupon")] == [
        ("console:mia", world.coupon_code)]
    page = await mia.get(done.headers["location"])
    assert "The coupon was voided." in page.text and f"Void coupon {world.coupon_code}" not in page.text


async def test_a_used_coupon_cannot_be_voided(mia, db, loyalty, world):
    await loyalty.use_coupon(world.coupon_code, staff_id=777)
    token = csrf_of(await mia.get(f"/console/members/{world.ann_id}"))
    refused = await mia.post(f"/console/members/{world.ann_id}/coupons/{world.coupon_id}/void", data={"csrf": token})
    assert refused.status_code == 409 and "already used" in refused.text
    async with db.read() as s:
        assert (await s.get(Coupon, world.coupon_id)).status == "used"


# --- export and erasure ---------------------------------------------------------------------------------


async def test_export_downloads_the_members_data_as_json_and_is_audited(mia, db, world):
    token = csrf_of(await mia.get(f"/console/members/{world.ann_id}"))
    got = await mia.post(f"/console/members/{world.ann_id}/export", data={"csrf": token})
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
    assert f'filename="member-{world.ann_no}.json"' in got.headers["content-disposition"]
    data = json.loads(got.content)
    assert data["member"]["member_no"] == world.ann_no and data["member"]["first_name"] == "Annabel"
    assert [p["external_id"] for p in data["purchases"]] == ["till-1"]
    assert [c["code"] for c in data["coupons"]] == [world.coupon_code]
    assert data["feedback"][0]["text"].startswith("The oat latte")
    assert data["survey_answers"][0]["comment"] == "Friendly staff, slow queue."
    assert [m["text"] for m in data["support_messages"]] == ["Where is my coupon?", "Under /coupons."]
    assert [e.actor for e in await audit(db, "export")] == ["console:mia"]


async def test_erasure_is_for_admins(mia, db, world):
    before = await business_snapshot(db)
    page = await mia.get(f"/console/members/{world.ann_id}/erase")
    assert page.status_code == 403 and "Only an admin" in page.text
    token = csrf_of(await mia.get(f"/console/members/{world.ann_id}"))
    refused = await mia.post(f"/console/members/{world.ann_id}/erase", data={"csrf": token, "confirm": world.ann_no})
    assert refused.status_code == 403
    assert await business_snapshot(db) == before


async def test_erasure_needs_the_member_number_typed_and_leaves_no_personal_data_on_the_page(ada, db, world):
    form = await ada.get(f"/console/members/{world.ann_id}/erase")
    assert form.status_code == 200 and world.ann_no in form.text and 'for="confirm"' in form.text
    token = csrf_of(form)
    before = await business_snapshot(db)
    for typed in ("", world.bob_no, world.ann_no[:-1], "yes"):
        refused = await ada.post(f"/console/members/{world.ann_id}/erase", data={"csrf": token, "confirm": typed})
        assert refused.status_code == 422 and 'id="confirm-error"' in refused.text, typed
    without = await ada.post(f"/console/members/{world.ann_id}/erase", data={"csrf": token})
    assert without.status_code == 422
    assert await business_snapshot(db) == before

    done = await ada.post(f"/console/members/{world.ann_id}/erase",
                          data={"csrf": token, "confirm": f" {world.ann_no.lower()} "})
    assert done.status_code == 303
    page = await ada.get(done.headers["location"])
    assert page.status_code == 200 and "erased" in page.text
    for personal in ("Annabel", "Smith", "612345678", "oat latte", "Friendly staff", "Where is my coupon"):
        assert personal not in page.text, personal
    async with db.read() as s:
        member = await s.get(Member, world.ann_id)
        assert member.status == "erased" and member.first_name is None
    assert [e.actor for e in await audit(db, "erase")] == ["console:ada"]
    again = await ada.get(f"/console/members/{world.ann_id}/erase")
    assert again.status_code == 303  # nothing left to erase: back to the page that says so
    token = csrf_of(page)
    export = await ada.post(f"/console/members/{world.ann_id}/export", data={"csrf": token})
    assert export.status_code == 410


# --- the feedback inbox ---------------------------------------------------------------------------------


async def test_a_feedback_reply_lands_once_in_the_outbox_even_when_posted_twice(mia, db, world):
    inbox = await mia.get("/console/feedback")
    assert inbox.status_code == 200 and f"/console/feedback/{world.feedback_id}" in inbox.text
    assert f'href="/console/members/{world.ann_id}"' in inbox.text
    item = await mia.get(f"/console/feedback/{world.feedback_id}")
    token = csrf_of(item)
    reply = {"csrf": token, "text": "Sorry! Your next latte is on us. <3"}
    first = await mia.post(f"/console/feedback/{world.feedback_id}/reply", data=reply)
    second = await mia.post(f"/console/feedback/{world.feedback_id}/reply", data=reply)
    assert first.status_code == second.status_code == 303
    assert "done=replied" in first.headers["location"] and "done=already" in second.headers["location"]
    async with db.read() as s:
        rows = list((await s.execute(sa.select(Outbox).where(
            Outbox.idempotency_key == f"feedback-reply:{world.feedback_id}"))).scalars())
        feedback = await s.get(Feedback, world.feedback_id)
    assert len(rows) == 1 and rows[0].status == "pending" and rows[0].chat_id == 9101
    assert "Your next latte is on us. &lt;3" in rows[0].text and f"#{world.feedback_id}" in rows[0].text
    assert feedback.state == "answered" and feedback.answered_by == "console:mia"
    assert [e.actor for e in await audit(db, "feedback_reply")] == ["console:mia"]
    answered = await mia.get("/console/feedback?state=answered")
    assert f"/console/feedback/{world.feedback_id}" in answered.text
    new = await mia.get("/console/feedback?state=new")
    assert f"/console/feedback/{world.feedback_id}\"" not in new.text


async def test_a_reply_to_a_chinese_member_is_in_their_language(mia, db, loyalty, world):
    feedback = await loyalty.record_feedback(world.bob_id, "太慢了")
    token = csrf_of(await mia.get(f"/console/feedback/{feedback.id}"))
    await mia.post(f"/console/feedback/{feedback.id}/reply", data={"csrf": token, "text": "抱歉"})
    async with db.read() as s:
        text = (await s.execute(sa.select(Outbox.text).where(
            Outbox.idempotency_key == f"feedback-reply:{feedback.id}"))).scalar_one()
    assert "我们的回复" in text and "抱歉" in text


async def test_bad_replies_are_refused_and_change_nothing(mia, db, world):
    token = csrf_of(await mia.get(f"/console/feedback/{world.feedback_id}"))
    before = await business_snapshot(db)
    for text in ("", "   ", "x" * 4001, "hi\x00there", "bell\x07"):
        refused = await mia.post(f"/console/feedback/{world.feedback_id}/reply", data={"csrf": token, "text": text})
        assert refused.status_code == 422 and 'id="reply-error"' in refused.text
    unknown = await mia.post("/console/feedback/999999/reply", data={"csrf": token, "text": "hello"})
    assert unknown.status_code == 404
    assert await business_snapshot(db) == before


async def test_closing_feedback_then_no_reply(mia, db, world):
    token = csrf_of(await mia.get(f"/console/feedback/{world.feedback_id}"))
    closed = await mia.post(f"/console/feedback/{world.feedback_id}/close", data={"csrf": token})
    assert closed.status_code == 303
    page = await mia.get(closed.headers["location"])
    assert "The feedback was closed." in page.text and 'name="text"' not in page.text
    refused = await mia.post(f"/console/feedback/{world.feedback_id}/reply", data={"csrf": token, "text": "late"})
    assert refused.status_code == 409
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Outbox).where(
            Outbox.kind == "feedback_reply"))).scalar_one() == 0
    assert [e.actor for e in await audit(db, "feedback_close")] == ["console:mia"]
    listed = await mia.get("/console/feedback?state=closed")
    assert f"/console/feedback/{world.feedback_id}" in listed.text


# --- surveys and support --------------------------------------------------------------------------------


async def test_survey_results_show_scores_counts_and_comments(mia, world):
    page = await mia.get("/console/surveys")
    assert page.status_code == 200
    assert "NPS" in page.text and "CSAT" in page.text and "Friendly staff, slow queue." in page.text
    assert "1 answers in the last 90 days" in page.text
    filtered = await mia.get("/console/surveys", params={"kind": "csat"})
    assert "Friendly staff" not in filtered.text
    by_score = await mia.get("/console/surveys", params={"kind": "nps", "score": "9"})
    assert "Friendly staff" in by_score.text
    odd = await mia.get("/console/surveys", params={"kind": "x'--", "score": "99", "days": "-1"})
    assert odd.status_code == 200


async def test_support_conversations_list_and_page(mia, world):
    listed = await mia.get("/console/support")
    assert listed.status_code == 200 and f"/console/support/{world.conversation_id}" in listed.text
    assert "Sam" in listed.text and world.ann_no in listed.text and "1 min" in listed.text
    waiting = await mia.get("/console/support?state=waiting")
    assert f"/console/support/{world.conversation_id}\"" not in waiting.text
    page = await mia.get(f"/console/support/{world.conversation_id}")
    assert page.status_code == 200
    assert "Where is my coupon?" in page.text and "Under /coupons." in page.text and "staff:777" in page.text
    assert (await mia.get("/console/support/424242")).status_code == 404


async def test_the_pages_speak_chinese(mia, world):
    token = csrf_of(await mia.get("/console/members"))
    await mia.post("/console/language", data={"language": "zh_Hans", "csrf": token, "next": "/console"})
    for path in ("/console/members", f"/console/members/{world.ann_id}", "/console/feedback",
                 f"/console/feedback/{world.feedback_id}", "/console/surveys", "/console/support",
                 f"/console/support/{world.conversation_id}"):
        page = await mia.get(path)
        assert page.status_code == 200 and "会员" in page.text, path


async def test_signed_out_visitors_are_sent_to_sign_in(app, db, world):
    before = await business_snapshot(db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as web:
        for path in ("/console/members", f"/console/members/{world.ann_id}", "/console/feedback", "/console/surveys",
                     "/console/support"):
            assert (await web.get(path)).status_code == 303, path
        refused = await web.post(f"/console/members/{world.ann_id}/adjust", data={"points": "5", "reason": "x"})
        assert refused.status_code == 303
    assert await business_snapshot(db) == before


async def test_nothing_was_written_to_the_ledger_by_reading_pages(mia, db, world):
    async with db.read() as s:
        before = (await s.execute(sa.select(sa.func.count()).select_from(LedgerEntry))).scalar_one()
    for path in (f"/console/members/{world.ann_id}", f"/console/members/{world.ann_id}?section=ledger&page=2"):
        assert (await mia.get(path)).status_code == 200
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(LedgerEntry))).scalar_one() == before
