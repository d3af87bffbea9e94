"""A mypy plugin: a field of a SQLModel table class, read on the class, is a SQLAlchemy column attribute.

At run time `Member.phone` (on the class) is an `InstrumentedAttribute[str | None]`, which is why
`Member.phone == "..."`, `Member.id.in_(...)` and `sa.select(Member.id)` build SQL; only `member.phone`
(on an instance) is a `str | None`. SQLModel declares the fields for the instance alone, so without
this plugin mypy reads every column expression as a plain comparison of Python values. The plugin
changes nothing for instances, for classes that are not tables, or for anything but declared fields.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import NameExpr, TypeInfo, Var
from mypy.plugin import AttributeContext, ClassDefContext, Plugin
from mypy.types import Instance, Type

SQLMODEL = "sqlmodel.main.SQLModel"
COLUMN_ATTRIBUTE = "sqlalchemy.orm.attributes.InstrumentedAttribute"
# Kept in the class's metadata, which mypy's cache keeps (a class read back from the cache has no keywords).
TABLE_KEY = "loyalbot.sqlmodel_table"


def _note_table(ctx: ClassDefContext) -> None:
    """Remember whether a SQLModel subclass is declared with `table=True`."""
    flag = ctx.cls.keywords.get("table")
    if isinstance(flag, NameExpr) and flag.fullname == "builtins.True":
        ctx.cls.info.metadata[TABLE_KEY] = {"table": True}


def _is_table(info: TypeInfo) -> bool:
    """A SQLModel subclass declared (or inheriting from one declared) with `table=True`."""
    return info.has_base(SQLMODEL) and any(TABLE_KEY in base.metadata for base in info.mro)


class SQLModelColumns(Plugin):
    # Called for every class definition, with its keywords still at hand (pydantic's plugin takes the
    # base-class hook of SQLModel's subclasses, and mypy gives that hook to one plugin only).
    def get_customize_class_mro_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        return _note_table

    def get_class_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner, _, name = fullname.rpartition(".")
        if not owner or name.startswith("_"):
            return None
        found = self.lookup_fully_qualified(owner)
        if found is None or not isinstance(found.node, TypeInfo) or not _is_table(found.node):
            return None
        field = found.node.names.get(name)
        if field is None or not isinstance(field.node, Var) or field.node.is_classvar:
            return None
        column = self.lookup_fully_qualified(COLUMN_ATTRIBUTE)
        if column is None or not isinstance(column.node, TypeInfo):
            return None
        return _column_attribute(column.node)


def _column_attribute(column: TypeInfo) -> Callable[[AttributeContext], Type]:
    def hook(ctx: AttributeContext) -> Type:
        if ctx.is_lvalue:
            return ctx.default_attr_type
        return Instance(column, [ctx.default_attr_type])
    return hook


def plugin(version: str) -> type[Plugin]:
    return SQLModelColumns
