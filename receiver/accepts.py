"""The accept path of the outbox: rows inserted on the event loop, fsync in a thread, group commit.

Why not the store's writer thread: under load the event loop holds the GIL almost all the time,
and a writer thread has to take it back after every SQLite call (the sqlite3 module releases it
around each statement), waiting up to the interpreter's switch interval each time. A batch of
accepts that needs 0.8 ms of database work took 4 ms of wall time that way, and every
acknowledgement waited for it.

Here the inserts and the COMMIT run on the event loop (tens of microseconds per notification,
no waiting). The connection runs with ``synchronous=NORMAL``: the commit writes the WAL without
syncing it, and the WAL file is then fsynced in a thread (which holds no GIL while it waits).
Callers are answered only after that fsync, so an acknowledged notification is on disk exactly
as with ``synchronous=FULL``; accepts arriving during an fsync are committed together afterwards
(group commit). NORMAL still syncs the WAL before checkpoints and the database after them;
checkpoints run on the store's writer thread, never on the loop (``wal_autocheckpoint=0`` here).

Other writers (the store's writer thread; anyone with the database open) hold the write lock briefly;
a batch that finds it taken is retried a moment later instead of blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BUSY_RETRY = 0.001  # seconds before retrying a batch that found the write lock taken
BUSY_GIVE_UP = 10.0  # seconds of lock contention before the batch fails (503, the sender retries)
CHECKPOINT_BYTES = 16 * 2**20  # ask for a checkpoint after about this much was written to the WAL
BATCH_BYTES = 8 * 2**20  # payload bytes per transaction: bounds how long one commit holds the loop
WAL_SIZE_LIMIT = 32 * 2**20  # the WAL file is cut back to this when SQLite starts it over

_INSERT_NOTIFICATION = (
    "INSERT INTO notifications (id, route, group_key, status, received_at, dedup_key, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_JOB = (
    "INSERT INTO jobs (notification_id, target, state, created_at, next_attempt_at, updated_at, last_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class AcceptFailed(Exception):
    """The batch could not be committed or synced; the notification is not stored."""


@dataclass(slots=True)
class PendingAccept:
    """Rows for one accepted notification and the future its HTTP request awaits."""

    notification_row: tuple
    job_rows: list[tuple]
    future: asyncio.Future
    on_failure: Callable[[], None]  # forget it in the dedup index


class AcceptWriter:
    """Owns one SQLite connection used only on the event loop thread."""

    def __init__(self, db_path: Path, request_checkpoint: Callable[[], None]):
        self.db_path = db_path
        self.wal_path = Path(f"{db_path}-wal")
        self.request_checkpoint = request_checkpoint
        self.conn: sqlite3.Connection | None = None
        self._wal_fd: int | None = None
        self._pending: list[PendingAccept] = []
        self._scheduled = False
        self._syncing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy_since: float | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="receiver-fsync")
        self.commits = 0  # transactions committed (observability / bench)
        self._written = 0  # payload bytes committed since the last checkpoint request (the WAL file
        # itself never shrinks when SQLite starts it over, so its size says nothing)

    def open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # the WAL is fsynced below, before anyone is answered
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints belong to the writer thread
        conn.execute("PRAGMA busy_timeout=0")  # never sleep on the loop: retry the batch instead
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")  # a burst's WAL does not stay on disk
        self.conn = conn
        self._wal_fd = os.open(self.wal_path, os.O_RDWR)
        return conn

    async def close(self) -> None:
        """Finish what is in flight; later accepts fail."""
        await self._idle.wait()
        self._fail(self._pending, "the store is closed")
        self._pending = []
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self._executor.shutdown(wait=False)

    def submit(self, item: PendingAccept) -> None:
        """Queue ``item``; its future is resolved once it is on disk, or fails with AcceptFailed."""
        if self.conn is None:
            self._fail([item], "the store is closed")
            return
        self._pending.append(item)
        self._idle.clear()
        self._schedule()

    def _schedule(self, delay: float = 0.0) -> None:
        if self._scheduled or self._syncing:
            return  # the running sync picks the pending ones up when it ends
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if delay:
            loop.call_later(delay, self._commit)
        else:
            loop.call_soon(self._commit)

    def _commit(self) -> None:
        """Insert and commit what is pending (one transaction, up to BATCH_BYTES of payload), then
        sync it in a thread; the rest goes into the next transaction."""
        self._scheduled = False
        size, cut = 0, len(self._pending)
        for i, p in enumerate(self._pending):
            size += len(p.notification_row[-1])
            if size > BATCH_BYTES and i > 0:
                cut = i
                break
        batch, self._pending = self._pending[:cut], self._pending[cut:]
        if not batch:
            self._idle.set()
            return
        conn = self.conn
        if conn is None:
            self._fail(batch + self._pending, "the store is closed")
            self._pending = []
            self._idle.set()
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc) and self._waited_less_than(BUSY_GIVE_UP):
                self._pending = batch + self._pending
                self._schedule(BUSY_RETRY)
                return
            self._busy_since = None
            self._fail(batch, f"store error: {exc}")
            self._after_sync()  # the rest of the pending ones get their own attempt
            return
        self._busy_since = None
        try:
            conn.executemany(_INSERT_NOTIFICATION, [p.notification_row for p in batch])
            conn.executemany(_INSERT_JOB, [row for p in batch for row in p.job_rows])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.error("store commit failed", extra={"err": str(exc), "notifications": len(batch)})
            self._fail(batch, f"store commit failed: {exc}")
            self._after_sync()
            return
        self.commits += 1
        self._written += sum(len(p.notification_row[-1]) for p in batch)
        self._syncing = True
        asyncio.get_running_loop().create_task(self._sync(batch))

    async def _sync(self, batch: list[PendingAccept]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, os.fsync, self._wal_fd)
        except OSError as exc:
            log.error("fsync of the outbox failed", extra={"err": str(exc), "notifications": len(batch)})
            self._fail(batch, f"store sync failed: {exc}")
        else:
            for p in batch:
                if not p.future.done():
                    p.future.set_result(None)
            if self._written >= CHECKPOINT_BYTES:
                self._written = 0
                self.request_checkpoint()
        finally:
            self._syncing = False
            self._after_sync()

    def _after_sync(self) -> None:
        if self._pending:
            self._schedule()
        else:
            self._idle.set()

    def _waited_less_than(self, limit: float) -> bool:
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since < limit

    @staticmethod
    def _fail(batch: list[PendingAccept], reason: str) -> None:
        for p in batch:
            p.on_failure()
            if not p.future.done():
                p.future.set_exception(AcceptFailed(reason))


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text
