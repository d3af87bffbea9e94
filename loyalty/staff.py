"""Staff: who may serve at the counter and in the staff group, and in which role."""

from __future__ import annotations

from sqlmodel import col, select

from loyalbot.loyalty import errors
from loyalbot.storage import Db
from loyalbot.storage.models import AuditLog, Staff

STAFF_ROLES = ("agent", "operator", "admin")


class StaffRoles:
    """The staff list: roles looked up, required, granted and withdrawn (each change audited)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def staff_role(self, telegram_id: int) -> str | None:
        async with self.db.read() as s:
            staff = await s.get(Staff, telegram_id)
        return staff.role if staff else None

    async def require_staff(self, telegram_id: int, roles: tuple[str, ...] = STAFF_ROLES) -> str:
        role = await self.staff_role(telegram_id)
        if role is None or role not in roles:
            raise errors.NotPermitted()
        return role

    async def add_staff(self, telegram_id: int, role: str, *, name: str | None = None, actor: str = "cli") -> Staff:
        if role not in STAFF_ROLES:
            raise errors.InvalidSetting(f"role must be one of {', '.join(STAFF_ROLES)}", setting="role")
        async with self.db.transaction() as tx:
            staff = await tx.get(Staff, telegram_id) or Staff(telegram_id=telegram_id, role=role)
            staff.role, staff.name = role, name or staff.name
            tx.add(staff)
            tx.add(AuditLog(actor=actor, action="staff_add", details={"telegram_id": telegram_id, "role": role}))
            return staff

    async def remove_staff(self, telegram_id: int, *, actor: str = "cli") -> bool:
        async with self.db.transaction() as tx:
            staff = await tx.get(Staff, telegram_id)
            if staff is None:
                return False
            await tx.delete(staff)
            tx.add(AuditLog(actor=actor, action="staff_remove", details={"telegram_id": telegram_id}))
            return True

    async def list_staff(self) -> list[Staff]:
        async with self.db.read() as s:
            return list((await s.execute(select(Staff).order_by(col(Staff.telegram_id)))).scalars())


__all__ = ["STAFF_ROLES", "StaffRoles"]
