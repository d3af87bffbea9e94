"""The house's rules, read from the code's own imports: which room may import which, no Telegram framework below
bot/, and no circle of module imports (at import time)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("bot", "chat", "console", "handlers", "loyalty", "scheduler", "storage")
# Imports point down only: bot -> handlers | console -> scheduler -> loyalty -> storage; chat sits beside loyalty.
# The console sits above the scheduler: operators edit schedules and campaigns there; the scheduler never
# imports the console.
MAY_IMPORT = {
    "bot": {"chat", "console", "handlers", "loyalty", "scheduler", "storage"},
    "handlers": {"chat", "loyalty", "storage"},
    "scheduler": {"chat", "loyalty", "storage"},
    "console": {"chat", "loyalty", "scheduler", "storage"},
    "loyalty": {"chat", "storage"},
    "chat": {"storage"},
    "storage": set(),
}
FRAMEWORKS = ("aiogram", "telegram")


def modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found["loyalbot." + ".".join(parts)] = path
    return found


def imports(path: Path, *, at_import_time: bool) -> list[str]:
    """Modules `path` imports; with `at_import_time`, only those run when it is imported (not inside functions
    or `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if not at_import_time:  # every import, inside functions too, but not type-only ones (`if TYPE_CHECKING:`)
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
    if at_import_time:
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try | ast.With):
                stack.extend(ast.iter_child_nodes(node))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_every_room_imports_only_the_rooms_below_it():
    # A room may name a higher one's types for the checker (under TYPE_CHECKING), never import it.
    wrong = []
    for name, path in modules().items():
        room = name.split(".")[1]
        for imported in imports(path, at_import_time=False):
            parts = imported.split(".")
            if parts[0] == "loyalbot" and len(parts) > 1 and parts[1] != room and parts[1] in ROOMS:
                if parts[1] not in MAY_IMPORT[room]:
                    wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
            if parts[0] in FRAMEWORKS and room != "bot":
                wrong.append(f"{path.relative_to(ROOT)} imports the framework {parts[0]}")
    assert wrong == []


def test_no_module_imports_itself_in_a_circle():
    known = modules()
    graph = {name: sorted({m for m in imports(path, at_import_time=True) if m in known and m != name})
             for name, path in known.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # A package's __init__ importing its own modules is how a package presents itself, not a circle.
    circles = [c for c in circles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert circles == []


def test_every_module_imports():
    """Each product module imports on its own (a name moved between modules fails here, not in a user's hands)."""
    import importlib

    failed = []
    for name in modules():
        if name.endswith("__main__"):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # report them all, not only the first
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    assert failed == []
