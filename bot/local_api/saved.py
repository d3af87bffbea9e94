"""Keep the local Bot API server's world in a SQLite file, so a demo restart forgets nobody.

`loyalbot demo` keeps its users (the page's identities), chats, messages, forum topics, files, the
bots' pending updates and every id counter here, in tables of the demo's own SQLite file that this
module creates itself (``localapi_*``, outside Alembic and loyalbot's schema: this is a test and demo
tool, not programme data). Without it, a restart handed out user id 100001 again and the bot greeted
the new identity as the old one.

Writes follow changes: the server calls :meth:`SavedWorld.changed` on every change, and a background
task writes what differs from the last write, in one transaction, from a worker thread (the bot
writes to the same file through aiosqlite; blocking the event loop on its lock could deadlock).
A crash can lose the last fraction of a second of chat, but never lets an id be handed out twice:
after an unclean stop every counter skips ahead by :data:`ID_GAP`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .records import BotRec, ChatRec, FileRec, MsgRec, TopicRec, UserRec, WebhookRec
from .world import World

__all__ = ["ID_GAP", "SavedWorld"]

log = logging.getLogger(__name__)

# After a crash, ids handed out since the last write are unknown: skip this many to be sure.
ID_GAP = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS localapi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS localapi_users (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS localapi_chats (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS localapi_bots (token TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS localapi_messages (
    chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id));
CREATE TABLE IF NOT EXISTS localapi_files (file_id TEXT PRIMARY KEY, data TEXT NOT NULL, bytes BLOB NOT NULL);
"""
COUNTERS = ("next_file_number", "next_callback_number", "next_user_id", "next_group_number")
_CHAT_SKIP = {"messages", "topics"}
_BOT_SKIP = {"poll_generation", "commands", "webhook"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _chat_data(chat: ChatRec) -> dict[str, Any]:
    data = {f.name: getattr(chat, f.name) for f in fields(chat) if f.name not in _CHAT_SKIP}
    data["topics"] = [asdict(topic) for topic in chat.topics.values()]
    return data


def _bot_data(bot: BotRec) -> dict[str, Any]:
    data = {f.name: getattr(bot, f.name) for f in fields(bot) if f.name not in _BOT_SKIP}
    data["commands"] = [[scope, lang, cmds] for (scope, lang), cmds in bot.commands.items()]
    data["webhook"] = asdict(bot.webhook) if bot.webhook else None
    return data


def _file_meta(record: FileRec) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name != "data"}


class SavedWorld:
    """The world of one server, saved in the SQLite file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._written: dict[tuple[str, Any], str] = {}
        self._files_written: set[str] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localapi-save")
        self._conn: sqlite3.Connection | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    # ------------------------------------------------------------------------------- loading

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode, with explicit BEGIN IMMEDIATE: sqlite3's implicit transactions would not
            # wrap the whole write, and a writer that waits must wait for the lock before reading.
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.executescript(SCHEMA)
        return self._conn

    def load(self, world: World) -> dict[str, Any] | None:
        """Fill ``world`` from the file; returns the saved demo config (or ``None`` for a new file)."""
        conn = self._connect()
        meta = {key: json.loads(value) for key, value in conn.execute("SELECT key, value FROM localapi_meta")}
        if not meta:
            self._write([], [], False)
            return None
        gap = 0 if meta.get("clean_stop") else ID_GAP
        for name in COUNTERS:
            if name in meta:
                setattr(world, name, int(meta[name]) + gap)
        for _, data in conn.execute("SELECT id, data FROM localapi_users"):
            user = UserRec(**json.loads(data))
            world.users[user.id] = user
        for _, data in conn.execute("SELECT id, data FROM localapi_chats"):
            raw = json.loads(data)
            topics = raw.pop("topics", [])
            chat = ChatRec(**raw)
            chat.next_message_id += gap
            chat.topics = {topic["thread_id"]: TopicRec(**topic) for topic in topics}
            world.chats[chat.id] = chat
        for chat_id, data in conn.execute("SELECT chat_id, data FROM localapi_messages ORDER BY chat_id, message_id"):
            msg = MsgRec(**json.loads(data))
            owner = world.chats.get(chat_id)
            if owner is not None:
                owner.messages[msg.message_id] = msg
        for token, data in conn.execute("SELECT token, data FROM localapi_bots"):
            raw = json.loads(data)
            commands = raw.pop("commands", [])
            webhook = raw.pop("webhook", None)
            bot = BotRec(**raw)
            bot.next_update_id += gap
            bot.commands = {(scope, lang): cmds for scope, lang, cmds in commands}
            bot.webhook = WebhookRec(**webhook) if webhook else None
            world.bots[token] = bot
        for data, blob in conn.execute("SELECT data, bytes FROM localapi_files"):
            record = FileRec(**json.loads(data), data=bytes(blob))
            world.files[record.file_id] = record
            world.files_by_path[record.file_path] = record
            self._files_written.add(record.file_id)
        world.orphan_updates = list(meta.get("orphan_updates", []))
        # Write the counters as they are now (skipped ahead after a crash) before anything is handed out,
        # and mark the run unclean until close() says otherwise.
        snapshot = self._snapshot(world, meta.get("demo_config"))
        self._write(snapshot, [], False)
        self._written = dict(snapshot)
        log.info("local Bot API world restored from %s: %d users, %d chats", self.path.name, len(world.users),
                 len(world.chats))
        return meta.get("demo_config")

    # ------------------------------------------------------------------------------- saving

    def _snapshot(self, world: World, demo_config: Any) -> list[tuple[tuple[str, Any], str]]:
        rows: list[tuple[tuple[str, Any], str]] = []
        for name in COUNTERS:
            rows.append((("meta", name), _dumps(getattr(world, name))))
        if isinstance(demo_config, dict):  # not "info": it holds the console password, kept elsewhere
            demo_config = {key: value for key, value in demo_config.items() if key != "info"}
        rows.append((("meta", "demo_config"), _dumps(demo_config)))
        rows.append((("meta", "orphan_updates"), _dumps(world.orphan_updates)))
        for user in world.users.values():
            rows.append((("users", user.id), _dumps(asdict(user))))
        for chat in world.chats.values():
            rows.append((("chats", chat.id), _dumps(_chat_data(chat))))
            for msg in chat.messages.values():
                rows.append((("messages", (chat.id, msg.message_id)), _dumps(asdict(msg))))
        for token, bot in world.bots.items():
            rows.append((("bots", token), _dumps(_bot_data(bot))))
        return rows

    def _changes(self, world: World, demo_config: Any) -> tuple[list[tuple[tuple[str, Any], str]], list[FileRec]]:
        changed = [(key, value) for key, value in self._snapshot(world, demo_config) if self._written.get(key) != value]
        files = [record for file_id, record in world.files.items() if file_id not in self._files_written]
        return changed, files

    def _write(self, changed: list[tuple[tuple[str, Any], str]], files: list[tuple[str, str, bytes]],
               clean: bool | None) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for (table, key), value in changed:
                if table == "meta":
                    conn.execute("INSERT OR REPLACE INTO localapi_meta VALUES (?, ?)", (key, value))
                elif table == "messages":
                    conn.execute("INSERT OR REPLACE INTO localapi_messages VALUES (?, ?, ?)", (*key, value))
                else:
                    conn.execute(f"INSERT OR REPLACE INTO localapi_{table} VALUES (?, ?)", (key, value))
            for file_id, meta, blob in files:
                conn.execute("INSERT OR REPLACE INTO localapi_files VALUES (?, ?, ?)", (file_id, meta, blob))
            if clean is not None:
                conn.execute("INSERT OR REPLACE INTO localapi_meta VALUES ('clean_stop', ?)", (_dumps(clean),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def flush(self, world: World, demo_config: Any, *, clean: bool | None = None) -> int:
        """Write what changed since the last flush; returns how many rows were written."""
        changed, files = self._changes(world, demo_config)
        if not changed and not files and clean is None:
            return 0
        blobs = [(record.file_id, _dumps(_file_meta(record)), record.data) for record in files]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, changed, blobs, clean)
        self._written.update(changed)
        self._files_written.update(record.file_id for record in files)
        return len(changed) + len(files)

    def clear(self, world: World) -> None:
        """Forget the saved world (``POST /control/reset``), keeping the counters: ids stay unique."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        for table in ("users", "chats", "bots", "messages", "files"):
            conn.execute(f"DELETE FROM localapi_{table}")
        conn.execute("COMMIT")
        self._written = {}
        self._files_written = set()
        self.changed()

    # ------------------------------------------------------------------------------ following

    def changed(self) -> None:
        """Something in the world changed: write it soon."""
        self._dirty.set()

    def follow(self, get_state: Any, debounce: float = 0.2) -> None:
        """Start writing changes in the background; ``get_state()`` returns ``(world, demo_config)``."""

        async def loop() -> None:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(debounce)  # one write for a burst of changes
                self._dirty.clear()
                try:
                    await self.flush(*get_state())
                    self._failures = 0
                except (sqlite3.Error, OSError) as exc:  # e.g. locked for 30 s: try again on the next change
                    self._failures += 1
                    self._dirty.set()
                    log.warning("could not save the local Bot API world (%s attempt): %s", self._failures,
                                type(exc).__name__)
                    await asyncio.sleep(min(5.0, 0.5 * self._failures))

        self._task = asyncio.create_task(loop(), name="localapi-save")

    async def close(self, world: World, demo_config: Any) -> None:
        """Write everything and mark the stop as clean (so no ids are skipped next time)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush(world, demo_config, clean=True)
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=True)
