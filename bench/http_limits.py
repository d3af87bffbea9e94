"""Benchmark: what `loyalbot api` lets through: memory for 100 MB requests, and wrong keys / sign-ins per burst.

Starts `loyalbot api` on a fresh SQLite file, measures its RSS around three 100 MB requests (chunked
without a key, declared with a key, chunked with a key), then fires bursts of wrong API keys and wrong
console passwords and counts how many were checked (401) before the throttle answered 429. Prints a
table and one JSON line. Not part of the tests.

    python bench/http_limits.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from loyalbot.console.api import create_api_key  # noqa: E402
from loyalbot.storage import Db  # noqa: E402
from loyalbot.storage.migrate import upgrade  # noqa: E402
from tests.console.test_process import MB, _send_big, rss_mb, start_api, stop_api  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="loyalbot-bench-http-"))
    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    upgrade(url)

    async def key() -> str:
        db = Db(url)
        try:
            return await create_api_key(db, "bench")
        finally:
            await db.dispose()

    shop_key = asyncio.run(key())
    base, process = start_api(url, work)
    rows = []
    try:
        for name, head, chunked in [
            ("100 MB chunked, no key", b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
             True),
            ("100 MB declared, valid key", b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             b"Content-Length: %d\r\n\r\n" % (shop_key.encode(), 100 * MB), False),
            ("100 MB chunked, valid key", b"POST /api/v1/purchases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" % shop_key.encode(), True),
        ]:
            before = rss_mb(process.pid)
            answer = _send_big(base, head, 100 * MB, chunked=chunked)
            rows.append({"case": name, "status": int(answer.split()[1]) if answer else None,
                         "rss_before_mb": round(before, 1), "rss_after_mb": round(rss_mb(process.pid), 1)})
        bursts = {}
        with httpx.Client(base_url=base, timeout=30) as client:
            for what, call in [
                ("wrong API keys", lambda i: client.get("/api/v1/members/123456782",
                                                        headers={"Authorization": f"Bearer lb_{i}"})),
                ("wrong console passwords", lambda i: client.get("/console", auth=("operator", f"guess{i}"))),
            ]:
                started = time.perf_counter()
                codes = [call(i).status_code for i in range(200)]
                bursts[what] = {"tried": 200, "checked_401": codes.count(401), "refused_429": codes.count(429),
                                "seconds": round(time.perf_counter() - started, 2)}
    finally:
        stop_api(process)
    print(f"{'request':32} {'status':>6} {'RSS before':>11} {'RSS after':>10}")
    for row in rows:
        print(f"{row['case']:32} {row['status']!s:>6} {row['rss_before_mb']:>9.1f}MB {row['rss_after_mb']:>8.1f}MB")
    print(f"\n{'burst of 200':32} {'401':>6} {'429':>6} {'seconds':>8}")
    for what, figures in bursts.items():
        print(f"{what:32} {figures['checked_401']:>6} {figures['refused_429']:>6} {figures['seconds']:>8}")
    print(json.dumps({"bench": "http_limits", "requests": rows, "bursts": bursts}))


if __name__ == "__main__":
    main()
