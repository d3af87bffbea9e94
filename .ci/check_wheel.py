"""CI: the wheel holds only the loyalbot/ namespace, with every catalogue, template, page and static file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("bot", "chat", "console", "handlers", "locales", "loyalty", "scheduler", "storage")
DATA = ("*.po", "*.j2", "*.html", "*.js", "*.css", "*.toml", "*.mako")


def main(wheel: str) -> int:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/", 1)[0] for n in names}
    strangers = sorted(t for t in tops if t != "loyalbot" and not t.endswith(".dist-info"))
    tracked = subprocess.run(["git", "ls-files", *[f"{room}/**/{pattern}" for room in ROOMS for pattern in DATA],
                              *[f"{room}/{pattern}" for room in ROOMS for pattern in DATA]],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    tracked += subprocess.run(["git", "ls-files", "console/static"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.split()
    missing = sorted({f"loyalbot/{path}" for path in tracked} - names)
    modules = sorted(p for p in subprocess.run(["git", "ls-files", *[f"{r}/*.py" for r in ROOMS]], cwd=ROOT,
                                               capture_output=True, text=True, check=True).stdout.split())
    missing += sorted(f"loyalbot/{path}" for path in modules if f"loyalbot/{path}" not in names)
    for problem, items in (("outside loyalbot/", strangers), ("missing from the wheel", missing)):
        for item in items:
            print(f"wheel: {problem}: {item}", file=sys.stderr)
    if strangers or missing:
        return 1
    print(f"wheel: {len(names)} files, all under loyalbot/ ({len(tracked)} data files, {len(modules)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
