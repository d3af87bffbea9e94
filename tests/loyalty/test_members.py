"""Joining the programme, settings, feedback, surveys, and the member's privacy rights."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from loyalbot.loyalty import errors
from loyalbot.loyalty.codes import valid_member_no
from tests.loyalty.helpers import snapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def test_joining_needs_terms_consent_and_changes_nothing_without_it(loyalty, db):
    before = await snapshot(db)
    with pytest.raises(errors.TermsRequired):
        await loyalty.register_member(telegram_id=1, terms_accepted=False, now=NOW)
    assert await snapshot(db) == before


async def test_the_same_telegram_user_twice_is_the_same_member(loyalty):
    first = await loyalty.register_member(telegram_id=7, first_name="Ann", terms_accepted=True, language="zh_Hant",
                                          marketing_consent=True, now=NOW)
    again = await loyalty.register_member(telegram_id=7, first_name="Ann", terms_accepted=True, now=NOW)
    assert first.id == again.id and valid_member_no(first.member_no)
    assert first.language == "zh_Hant" and first.tier == "green"
    assert first.marketing_consent and first.marketing_consent_at == NOW and first.terms_accepted_at == NOW
    assert (await loyalty.member_by_number(first.member_no)).id == first.id


@pytest.mark.parametrize("birthday", [date(2027, 1, 1), date(1899, 12, 31), date(2025, 1, 1)])
async def test_implausible_birthdays_are_refused(loyalty, db, birthday):
    before = await snapshot(db)
    with pytest.raises(errors.InvalidBirthday):
        await loyalty.register_member(telegram_id=1, terms_accepted=True, birthday=birthday, now=NOW)
    assert await snapshot(db) == before


async def test_member_numbers_with_a_typo_are_not_found(loyalty):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    typo = ann.member_no[:-1] + str((int(ann.member_no[-1]) + 1) % 10)
    with pytest.raises(errors.UnknownMember):
        await loyalty.member_by_number(typo)
    with pytest.raises(errors.UnknownMember):
        await loyalty.member_by_number("DROP TABLE")


async def test_settings_are_checked(loyalty, db):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    before = await snapshot(db)
    for bad in ({"language": "fr"}, {"timezone": "Mars/Olympus"}, {"quiet_start": 99999},
                {"notify": {"spam": True}}, {"balance": 10**6}):
        with pytest.raises(errors.Refusal):
            await loyalty.update_member(ann.id, now=NOW, **bad)
    assert await snapshot(db) == before
    changed = await loyalty.update_member(ann.id, language="zh_Hans", notify={"offers": False},
                                          quiet_start=22 * 60, quiet_end=8 * 60, now=NOW)
    assert changed.language == "zh_Hans" and changed.notify["offers"] is False and changed.notify["care"] is True


async def test_feedback_is_stored_and_bad_feedback_refused(loyalty, db):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    before = await snapshot(db)
    for text, rating in (("", None), ("x" * 4001, None), ("ok", 6), ("ok", 0)):
        with pytest.raises(errors.Refusal):
            await loyalty.record_feedback(ann.id, text, rating=rating, now=NOW)
    assert await snapshot(db) == before
    feedback = await loyalty.record_feedback(ann.id, "  The oat latte was lovely 🌿 ", rating=5, now=NOW)
    assert feedback.id and feedback.text == "The oat latte was lovely 🌿"


async def test_survey_answers_are_checked_and_stored_once(loyalty, db):
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    ben = await loyalty.register_member(telegram_id=2, terms_accepted=True, now=NOW)
    nps = await loyalty.open_survey(ann.id, "nps", trigger="schedule", now=NOW)
    assert await loyalty.open_survey(ann.id, "csat", trigger="coupon", now=NOW) is None  # one open at a time
    before = await snapshot(db)
    for score in (-1, 11, "7", 7.5, True):
        with pytest.raises(errors.ScoreOutOfRange):
            await loyalty.record_survey_answer(ann.id, nps.id, score, now=NOW)
    with pytest.raises(errors.UnknownSurvey):
        await loyalty.record_survey_answer(ben.id, nps.id, 9, now=NOW)  # not Ben's survey
    assert await snapshot(db) == before
    await loyalty.record_survey_answer(ann.id, nps.id, 9, now=NOW)
    with pytest.raises(errors.SurveyClosed):
        await loyalty.record_survey_answer(ann.id, nps.id, 3, now=NOW)
    answer = await loyalty.add_survey_comment(ann.id, nps.id, "Friendly staff")
    assert (answer.score, answer.comment) == (9, "Friendly staff")
    csat = await loyalty.open_survey(ben.id, "csat", trigger="coupon", now=NOW)
    await loyalty.record_survey_answer(ben.id, csat.id, 2, now=NOW)
    scores = await loyalty.scores("nps", since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
    assert (scores.answers, scores.value) == (1, 100.0)
    scores = await loyalty.scores("csat", since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
    assert (scores.answers, scores.value) == (1, 0.0)


async def test_export_holds_everything_and_erase_keeps_only_anonymous_books(loyalty, db):
    ann = await loyalty.register_member(telegram_id=1, first_name="Ann", phone="+31600000000", terms_accepted=True,
                                        birthday=date(1990, 5, 1), now=NOW)
    await loyalty.award_purchase(ann.id, external_id="p1", amount="80", now=NOW)
    await loyalty.record_feedback(ann.id, "Lovely", now=NOW)
    document = json.loads(json.dumps(await loyalty.export_member_data(ann.id)))
    assert document["member"]["phone"] == "+31600000000" and document["member"]["member_no"] == ann.member_no
    assert [p["external_id"] for p in document["purchases"]] == ["p1"]
    assert document["feedback"][0]["text"] == "Lovely" and document["ledger"][0]["delta"] == 80

    await loyalty.erase_member(ann.id, actor="member", now=NOW)
    assert await loyalty.member_by_telegram(1) is None
    with pytest.raises(errors.MemberErased):
        await loyalty.member(ann.id)
    rows = await snapshot(db)
    flat = json.dumps(rows)
    for personal in ("+31600000000", "Ann", "1990-05-01", "Lovely"):
        assert personal not in flat
    assert any("80" in row for row in rows["ledger_entries"])  # the books still show what was earned
    assert await loyalty.ledger_check(ann.id) == (0, 0, 0)
    again = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    assert again.id != ann.id and again.balance == 0


async def test_a_welcome_bonus_is_a_lot_given_once(db, programme):
    from loyalbot.loyalty import Loyalty

    generous = programme.model_copy(update={"earning": programme.earning.model_copy(update={"welcome_bonus": 200})})
    loyalty = Loyalty(db, generous)
    await loyalty.sync_programme()
    ann = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    again = await loyalty.register_member(telegram_id=1, terms_accepted=True, now=NOW)
    assert ann.balance == again.balance == 200
    assert await loyalty.ledger_check(ann.id) == (200, 200, 200)
    assert [(e.points, e.expires_at > NOW) for e in await loyalty.points_expiring(ann.id, now=NOW)] == [(200, True)]
