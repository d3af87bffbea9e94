"""Without Chromium the browser tests skip with a reason, except in CI (CI=true), where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_browser_test(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LOYALBOT_CHROMIUM")}
    env |= {"PYTHONPATH": str(ROOT), "LOYALBOT_CHROMIUM": str(tmp_path / "no-chromium-here"), **extra}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
         str(ROOT / "tests/browser/test_demo_page.py::test_join_in_chinese_redeem_and_staff_use_the_coupon")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_outside_ci_a_missing_chromium_skips_with_the_reason(tmp_path):
    result = run_browser_test(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 skipped" in result.stdout and "no-chromium-here is not a file" in result.stdout, result.stdout[-2000:]


def test_in_ci_a_missing_chromium_fails(tmp_path):
    result = run_browser_test(tmp_path, CI="true")
    assert result.returncode != 0, result.stdout[-2000:]
    assert "must run in CI" in result.stdout, result.stdout[-2000:]
