"""The admin pages (staff, operators, API keys) over HTTP, on both stores: what an admin sees and changes, what an
operator is refused, and that a refused or forged post changes nothing."""

from __future__ import annotations

import re

import httpx
import pytest
import sqlalchemy as sa

from loyalbot.console.accounts import LOCK_AFTER, add_operator, list_operators
from loyalbot.console.api import HttpLimits, create_app, list_api_keys
from loyalbot.storage.models import AuditLog, ConsoleSession
from loyalbot.storage.throttle import SqlThrottle

PASSWORD = "correct horse battery"
ADMIN_PAGES = ("/console/staff", "/console/operators", "/console/apikeys")


@pytest.fixture
async def app(db, loyalty):
    await add_operator(db, "mia", PASSWORD, role="operator")
    await add_operator(db, "root", PASSWORD + "!", role="admin")
    return create_app(db, loyalty, throttle=SqlThrottle(db), limits=HttpLimits(auth_failures=100))


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                             base_url="http://console")


@pytest.fixture
async def admin(app):
    async with client(app) as web:
        assert (await sign_in(web, "root", PASSWORD + "!")).status_code == 303
        yield web


@pytest.fixture
async def mia(app):
    async with client(app) as web:
        assert (await sign_in(web, "mia", PASSWORD)).status_code == 303
        yield web


async def sign_in(web: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await web.post("/console/signin", data={"name": name, "password": password, "next": "/console"})


async def csrf(web: httpx.AsyncClient, page: str = "/console") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await web.get(page)).text)
    assert found
    return found.group(1)


async def audit(db, action: str) -> list[AuditLog]:
    async with db.read() as s:
        return list((await s.execute(sa.select(AuditLog).where(AuditLog.action == action))).scalars())


def shown_secret(page: httpx.Response) -> str:
    found = re.search(r'<code id="secret-text" data-secret>([^<]+)</code>', page.text)
    assert found, page.text
    return found.group(1)


async def test_an_operator_is_refused_the_admin_pages_and_does_not_see_them_in_the_navigation(mia, db):
    home = await mia.get("/console")
    for page in ADMIN_PAGES:
        assert f'href="{page}"' not in home.text
        refused = await mia.get(page)
        assert refused.status_code == 403 and "Only an admin may do this." in refused.text
    token = await csrf(mia)
    for page, data in (("/console/operators", {"name": "eve", "role": "admin", "language": "en"}),
                       ("/console/staff", {"telegram_id": "777", "role": "admin"}),
                       ("/console/apikeys", {"name": "mine"})):
        assert (await mia.post(page, data={**data, "csrf": token})).status_code == 403
    assert [o.name for o in await list_operators(db)] == ["mia", "root"]
    assert await list_api_keys(db) == []
    assert (await mia.post("/console/operators/root/remove", data={"csrf": token})).status_code == 403
    assert (await mia.post("/console/operators/mia/role", data={"csrf": token, "role": "admin"})).status_code == 403
    assert {o.name: o.role for o in await list_operators(db)} == {"mia": "operator", "root": "admin"}


async def test_an_admin_sees_the_admin_pages_in_the_navigation(admin):
    home = await admin.get("/console")
    for page in ADMIN_PAGES:
        assert f'href="{page}"' in home.text
        assert (await admin.get(page)).status_code == 200


async def test_posts_without_their_csrf_token_change_nothing(admin, db, loyalty):
    for page, data in (("/console/operators", {"name": "eve", "role": "admin", "language": "en"}),
                       ("/console/staff", {"telegram_id": "777", "role": "admin"}),
                       ("/console/apikeys", {"name": "till"}),
                       ("/console/operators/mia/remove", {}),
                       ("/console/operators/mia/password", {})):
        refused = await admin.post(page, data=data)
        assert refused.status_code == 400 and "did not come from the console" in refused.text
        wrong = await admin.post(page, data={**data, "csrf": "x" * 43})
        assert wrong.status_code == 400
    assert [o.name for o in await list_operators(db)] == ["mia", "root"]
    assert await loyalty.list_staff() == [] and await list_api_keys(db) == []
    assert (await sign_in(client_of(admin), "mia", PASSWORD)).status_code == 303  # mia's password unchanged


def client_of(web: httpx.AsyncClient) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=web._transport, base_url="http://console")


async def test_an_admin_adds_an_operator_who_signs_in_with_the_password_shown_once(admin, app, db):
    token = await csrf(admin, "/console/operators")
    added = await admin.post("/console/operators", data={"csrf": token, "name": "li.wei", "role": "operator",
                                                         "language": "zh_Hans"})
    assert added.status_code == 201
    password = shown_secret(added)
    assert "shown only this once" in added.text
    again = await admin.get("/console/operators")
    assert password not in again.text and "li.wei" in again.text
    async with client(app) as li:
        assert (await sign_in(li, "li.wei", password)).status_code == 303
        assert "仪表板" in (await li.get("/console")).text  # their language
    (row,) = await audit(db, "operator_add")
    assert row.actor == "console:root" and row.details == {"name": "li.wei", "role": "operator"}
    assert password not in str(row.details)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"name": ""}, "op-name", "Enter a name."),
    ({"name": "bad name"}, "op-name", "1-64 letters"),
    ({"name": "eve\x00"}, "op-name", "Control characters are not allowed."),
    ({"name": "e" * 65}, "op-name", "at most 64 characters"),
    ({"name": "mia"}, "op-name", "already exists"),
    ({"role": "root"}, "op-role", "Choose a role from the list."),
    ({"language": "fr"}, "op-language", "Choose a language from the list."),
])
async def test_a_bad_new_operator_is_refused_next_to_its_field_and_nothing_changes(admin, db, fields, field, message):
    token = await csrf(admin, "/console/operators")
    refused = await admin.post("/console/operators", data={"csrf": token, "name": "eve", "role": "operator",
                                                           "language": "en", **fields})
    assert refused.status_code == 422
    assert re.search(rf'<p class="field-error" id="{field}-error">[^<]*{re.escape(message)}', refused.text), refused.text
    assert f'aria-describedby="{field}-error"' in refused.text
    assert 'data-secret' not in refused.text
    assert [o.name for o in await list_operators(db)] == ["mia", "root"]
    assert await audit(db, "operator_add") == []


async def test_a_new_password_ends_their_sessions_and_the_old_one_stops_working(admin, mia, app, db):
    token = await csrf(admin, "/console/operators")
    reset = await admin.post("/console/operators/mia/password", data={"csrf": token})
    assert reset.status_code == 200
    password = shown_secret(reset)
    assert (await mia.get("/console")).status_code == 303, "mia's open session ended"
    async with client(app) as web:
        assert (await sign_in(web, "mia", PASSWORD)).status_code == 401
        assert (await sign_in(web, "mia", password)).status_code == 303
    assert [r.details for r in await audit(db, "operator_password")] == [{"name": "mia"}]


async def test_roles_change_but_the_last_admin_stays_admin_and_an_admin_cannot_remove_themselves(admin, db):
    token = await csrf(admin, "/console/operators")
    last = await admin.post("/console/operators/root/role", data={"csrf": token, "role": "operator"})
    assert last.status_code == 409 and "last admin" in last.text
    self_removal = await admin.post("/console/operators/root/remove", data={"csrf": token})
    assert self_removal.status_code == 409
    assert (await admin.get("/console/operators/root/remove")).status_code == 409
    made = await admin.post("/console/operators/mia/role", data={"csrf": token, "role": "admin"})
    assert made.status_code == 303 and made.headers["location"] == "/console/operators?done=operator_role"
    assert "The role was changed." in (await admin.get(made.headers["location"])).text
    assert {o.name: o.role for o in await list_operators(db)} == {"mia": "admin", "root": "admin"}
    odd = await admin.post("/console/operators/mia/role", data={"csrf": token, "role": "superuser"})
    assert odd.status_code == 400
    unknown = await admin.post("/console/operators/nobody/role", data={"csrf": token, "role": "admin"})
    assert unknown.status_code == 404
    (row,) = await audit(db, "operator_role")
    assert row.actor == "console:root" and row.details == {"name": "mia", "from": "operator", "to": "admin"}


async def test_removing_an_operator_signs_them_out_everywhere(admin, mia, db):
    confirm = await admin.get("/console/operators/mia/remove")
    assert confirm.status_code == 200 and "Remove mia?" in confirm.text
    token = await csrf(admin, "/console/operators")
    removed = await admin.post("/console/operators/mia/remove", data={"csrf": token})
    assert removed.status_code == 303
    assert (await mia.get("/console")).status_code == 303
    assert [o.name for o in await list_operators(db)] == ["root"]
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(ConsoleSession)
                                .where(ConsoleSession.revoked_at.is_(None)))).scalar_one() == 1  # root's own
    assert [r.details for r in await audit(db, "operator_remove")] == [{"name": "mia", "role": "operator"}]


async def test_an_admin_unlocks_a_locked_account(admin, app, db):
    async with client(app) as web:
        for _ in range(LOCK_AFTER):
            await sign_in(web, "mia", "guess guess guess")
        assert "locked" in (await sign_in(web, "mia", PASSWORD)).text
        page = await admin.get("/console/operators")
        assert "locked until" in page.text and 'action="/console/operators/mia/unlock"' in page.text
        token = await csrf(admin, "/console/operators")
        assert (await admin.post("/console/operators/mia/unlock", data={"csrf": token})).status_code == 303
        assert (await sign_in(web, "mia", PASSWORD)).status_code == 303
    assert len(await audit(db, "operator_unlock")) == 1


async def test_staff_are_added_changed_and_removed_and_each_change_is_audited(admin, loyalty, db):
    token = await csrf(admin, "/console/staff")
    added = await admin.post("/console/staff", data={"csrf": token, "telegram_id": " 424242 ", "role": "agent",
                                                     "name": "Sam"})
    assert added.status_code == 303
    page = await admin.get(added.headers["location"])
    assert "424242" in page.text and "The staff list was saved." in page.text
    assert await loyalty.staff_role(424242) == "agent"
    assert (await admin.post("/console/staff/424242/role", data={"csrf": token, "role": "operator"})).status_code == 303
    assert await loyalty.staff_role(424242) == "operator"
    assert (await admin.get("/console/staff/424242/remove")).status_code == 200
    assert (await admin.post("/console/staff/424242/remove", data={"csrf": token})).status_code == 303
    assert await loyalty.staff_role(424242) is None
    assert (await admin.post("/console/staff/424242/remove", data={"csrf": token})).status_code == 404
    assert (await admin.post("/console/staff/999/role", data={"csrf": token, "role": "agent"})).status_code == 404
    assert await loyalty.staff_role(999) is None, "changing the role of nobody adds nobody"
    actors = {(r.action, r.actor) for r in [*await audit(db, "staff_add"), *await audit(db, "staff_remove")]}
    assert actors == {("staff_add", "console:root"), ("staff_remove", "console:root")}


@pytest.mark.parametrize(("fields", "field"), [
    ({"telegram_id": ""}, "staff-id"), ({"telegram_id": "-5"}, "staff-id"), ({"telegram_id": "12.5"}, "staff-id"),
    ({"telegram_id": "١٢٣"}, "staff-id"), ({"telegram_id": "9" * 20}, "staff-id"), ({"telegram_id": "0"}, "staff-id"),
    ({"role": "owner"}, "staff-role"), ({"name": "Sam\x1b[31m"}, "staff-name"), ({"name": "S" * 129}, "staff-name"),
])
async def test_bad_staff_entries_are_refused_next_to_the_field(admin, loyalty, fields, field):
    token = await csrf(admin, "/console/staff")
    refused = await admin.post("/console/staff", data={"csrf": token, "telegram_id": "424242", "role": "agent",
                                                       "name": "Sam", **fields})
    assert refused.status_code == 422
    assert f'id="{field}-error"' in refused.text
    assert re.search(rf'aria-describedby="[^"]*{field}-error', refused.text)
    assert await loyalty.list_staff() == []


async def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(admin, app, db, loyalty):
    member = await loyalty.register_member(telegram_id=5, first_name="Ann", terms_accepted=True)
    token = await csrf(admin, "/console/apikeys")
    made = await admin.post("/console/apikeys", data={"csrf": token, "name": "till 1"})
    assert made.status_code == 201 and 'data-copy="secret-text"' in made.text
    key = shown_secret(made)
    listing = await admin.get("/console/apikeys")
    assert key not in listing.text and key[:10] in listing.text
    purchase = {"member_no": member.member_no, "external_id": "r-1", "amount": "12.50"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop",
                                 headers={"Authorization": f"Bearer {key}"}) as shop:
        assert (await shop.post("/api/v1/purchases", json=purchase)).status_code == 201
        (stored,) = await list_api_keys(db)
        confirm = await admin.get(f"/console/apikeys/{stored.id}/revoke")
        assert confirm.status_code == 200 and "till 1" in confirm.text and "cannot be undone" in confirm.text
        revoked = await admin.post(f"/console/apikeys/{stored.id}/revoke", data={"csrf": token})
        assert revoked.status_code == 303
        refused = await shop.post("/api/v1/purchases", json={**purchase, "external_id": "r-2"})
        assert refused.status_code == 401
    assert (await admin.post("/console/apikeys/99999/revoke", data={"csrf": token})).status_code == 404
    assert (await admin.post("/console/apikeys/x1/revoke", data={"csrf": token})).status_code == 404
    (created,) = await audit(db, "apikey_create")
    assert created.actor == "console:root" and created.details == {"name": "till 1", "prefix": key[:10]}
    assert key not in str(created.details)
    assert len(await audit(db, "apikey_revoke")) == 1


@pytest.mark.parametrize("name", ["", "till\x07", "t" * 101])
async def test_a_bad_key_name_is_refused_and_no_key_is_made(admin, db, name):
    token = await csrf(admin, "/console/apikeys")
    refused = await admin.post("/console/apikeys", data={"csrf": token, "name": name})
    assert refused.status_code == 422 and 'id="key-name-error"' in refused.text and "data-secret" not in refused.text
    assert await list_api_keys(db) == []
