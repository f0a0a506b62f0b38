"""The durable outbox: SQLite (WAL) holding accepted notifications and one delivery job per target.

Accepts take the fast path in ``receiver.accepts`` (inserted on the event loop, fsynced in a
thread, group-committed): an HTTP accept is answered 2xx only once its rows are on disk. Every
other operation (delivery bookkeeping, the API, pruning, checkpoints) runs on one writer thread,
never on the event loop; operations queued while a transaction is in progress run together in the
next transaction with one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from receiver.accepts import AcceptFailed, AcceptWriter, PendingAccept
from receiver.compose import notification_to_dict
from receiver.ingest import Accepted, restore
from receiver.model import Notification

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_NAME = "receiver.db"
MAX_BATCH = 1000  # operations per transaction
_CHECKPOINT = object()  # writer-thread queue item: checkpoint the WAL after the current batch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at REAL NOT NULL,
    dedup_key TEXT NOT NULL,
    body TEXT NOT NULL  -- the payload exactly as received (JSON text)
);
DROP INDEX IF EXISTS notifications_dedup;  -- dedup runs on an in-memory index of the last hour(s)
CREATE INDEX IF NOT EXISTS notifications_received ON notifications(received_at);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    notification_id TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,              -- pending | delivered | dead | skipped
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    digest INTEGER NOT NULL DEFAULT 0 -- delivered as part of a digest
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs(target, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(updated_at) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS jobs_notification ON jobs(notification_id);
"""


class _BatchLost(Exception):
    """SQLite rolled back the whole transaction; every operation of the batch failed."""

    def __init__(self, cause: sqlite3.Error):
        super().__init__(str(cause))
        self.cause = cause


class StoreUnavailable(Exception):
    """The outbox cannot commit (closed, disk full, I/O error): the sender must retry (HTTP 5xx)."""


@dataclass(frozen=True)
class AcceptResult:
    notification_id: str
    duplicate: bool  # same notification seen within the dedup window: acknowledged, not delivered again
    duplicate_of: str | None = None


@dataclass
class Job:
    id: int
    notification_id: str
    target: str
    attempts: int
    created_at: float
    notification: Notification


@dataclass(frozen=True)
class NextBatch:
    jobs: list[Job]
    hold_until: float | None = None  # a digest is due but waits for the burst to end


@dataclass(frozen=True)
class JobUpdate:
    """Outcome of one attempt for one job."""

    job_id: int
    state: str  # pending (retry later) | delivered | dead
    attempts: int
    next_attempt_at: float = 0.0
    error: str | None = None
    digest: bool = False


class Store:
    """Async facade over a single SQLite writer thread."""

    def __init__(self, directory: str | Path, *, synchronous: str = "FULL", dedup_horizon: float = 300.0):
        self.directory = Path(directory)
        self.dedup_horizon = dedup_horizon  # how far back the in-memory dedup index reaches
        self._recent: dict[str, tuple[str, float]] = {}
        self._recent_pruned = 0.0
        self._inflight: dict[str, asyncio.Future] = {}  # dedup key → commit of its first copy
        self.path = self.directory / DB_NAME
        self.synchronous = synchronous
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.accepts: AcceptWriter | None = None
        self._checkpoint_requested = False
        self._closed = True
        self.batches = 0  # transactions committed (observability / bench)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and schema, start the writer thread (call before serving)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ready: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="receiver-store", daemon=True)
        self._thread.start()
        err = ready.get()
        if err is not None:
            raise StoreUnavailable(f"cannot open the store {self.path}: {err}")
        accepts = AcceptWriter(self.path, self._request_checkpoint)
        try:
            self._load_recent(accepts.open())
        except (sqlite3.Error, OSError) as exc:
            self._queue.put(None)
            raise StoreUnavailable(f"cannot open the store {self.path}: {exc}") from None
        self.accepts = accepts
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.accepts is not None:
            await self.accepts.close()
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)

    @property
    def is_open(self) -> bool:
        return not self._closed and self._thread is not None and self._thread.is_alive()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return conn

    def _run(self, ready: queue.SimpleQueue) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            ready.put(exc)
            return
        ready.put(None)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    break
                batch = [] if first is _CHECKPOINT else [first]
                checkpoint = first is _CHECKPOINT
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    if item is _CHECKPOINT:
                        checkpoint = True
                    else:
                        batch.append(item)
                if batch:
                    self._execute_batch(conn, batch)
                if checkpoint:
                    self._checkpoint(conn)
                if stop:
                    break
        finally:
            conn.close()
            # anything queued after close fails rather than hanging forever
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item is not _CHECKPOINT:
                    _resolve_all([(item[1], item[2], None, StoreUnavailable("the store is closed"))])

    def _execute_batch(self, conn: sqlite3.Connection, batch: list) -> None:
        """One transaction, one commit for the whole batch; each operation runs inside a
        savepoint so a failing one does not poison the others."""
        results: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        reads = [i for i, item in enumerate(batch) if isinstance(item[0], _Read)]
        if reads:
            self._execute_reads(conn, batch, reads, results)
            if len(reads) == len(batch):
                _resolve_all([(loop, fut, v, e) for (_, loop, fut), (v, e) in zip(batch, results, strict=True)])
                return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, (fn, _, _) in enumerate(batch):
                if isinstance(fn, _Read):
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    results[i] = (fn(conn), None)
                    conn.execute("RELEASE op")
                except sqlite3.Error as exc:
                    if not conn.in_transaction:  # SQLITE_FULL / IOERR roll back the whole transaction
                        raise _BatchLost(exc) from exc
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results[i] = (None, StoreUnavailable(f"store error: {exc}"))
                except Exception as exc:  # a bug in one operation must not poison the batch
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results[i] = (None, exc)
            conn.execute("COMMIT")
            self.batches += 1
        except (sqlite3.Error, _BatchLost) as exc:
            if isinstance(exc, _BatchLost):
                exc = exc.cause
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("store commit failed", extra={"err": str(exc), "operations": len(batch)})
            failed = StoreUnavailable(f"store commit failed: {exc}")
            results = [r if isinstance(item[0], _Read) else (None, failed) for item, r in zip(batch, results, strict=True)]
        _resolve_all([(loop, fut, value, err) for (_, loop, fut), (value, err) in zip(batch, results, strict=True)])

    @staticmethod
    def _execute_reads(conn: sqlite3.Connection, batch: list, reads: list[int], results: list) -> None:
        """The batch's read-only operations, in one deferred (snapshot) transaction."""
        try:
            conn.execute("BEGIN")
            for i in reads:
                try:
                    results[i] = (batch[i][0].fn(conn), None)
                except sqlite3.Error as exc:
                    results[i] = (None, StoreUnavailable(f"store error: {exc}"))
                except Exception as exc:
                    results[i] = (None, exc)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for i in reads:
                results[i] = (None, StoreUnavailable(f"store error: {exc}"))

    def _request_checkpoint(self) -> None:
        """Called on the loop when the WAL has grown: one checkpoint request in flight at a time."""
        if not self._checkpoint_requested and not self._closed:
            self._checkpoint_requested = True
            self._queue.put(_CHECKPOINT)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database (fsynced) so the WAL can start over. PASSIVE copies the
        bulk without holding up the accepts; but accepts keep appending meanwhile, so on its own it
        never catches up under sustained load and the WAL grows without end. RESTART then copies
        the few frames added meanwhile while holding the write lock (accepts retry a moment later)
        and makes the next write start the WAL over."""
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, log_frames, done = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if busy:
                log.debug("WAL checkpoint incomplete, next time", extra={"frames": log_frames, "copied": done})
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed", extra={"err": str(exc)})
        finally:
            self._checkpoint_requested = False

    # dedup memory: owned by the event loop thread (the accept path)
    def _dedup(self, key: str, notification_id: str, now: float, window: float) -> str | None:
        if now - self._recent_pruned > 60:
            horizon = now - self.dedup_horizon
            self._recent = {k: v for k, v in self._recent.items() if v[1] >= horizon}
            self._recent_pruned = now
        seen = self._recent.get(key)
        if window > 0 and seen is not None and seen[1] >= now - window:
            return seen[0]
        self._recent[key] = (notification_id, now)
        return None

    def _forget(self, key: str, notification_id: str) -> None:
        if self._recent.get(key, ("",))[0] == notification_id:
            del self._recent[key]

    def _load_recent(self, conn: sqlite3.Connection) -> None:
        since = time.time() - self.dedup_horizon
        self._recent = {
            key: (nid, at)
            for key, nid, at in conn.execute(
                "SELECT dedup_key, id, received_at FROM notifications WHERE received_at >= ? ORDER BY received_at",
                (since,),
            )
        }
        self._recent_pruned = time.time()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread inside the next group-committed transaction."""
        if not self.is_open:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((fn, loop, fut))
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``run`` for queries that write nothing: they run in a read transaction, which in WAL
        mode never takes the write lock, so they never hold up accepts or the other process."""
        return await self.run(_Read(fn))

    # -- operations --------------------------------------------------------------------------

    async def accept(
        self,
        acc: Accepted,
        targets: Sequence[str],
        skipped: Iterable[tuple[str, str]] = (),
        *,
        dedup_window: float = 300.0,
    ) -> AcceptResult:
        """Store the payload as received with one pending job per target (and a 'skipped' record per
        skipped target), unless the same notification was accepted within ``dedup_window`` seconds."""
        if self._closed or self.accepts is None:  # (not is_open: Thread.is_alive takes a lock, per request)
            raise StoreUnavailable("the store is closed")
        now = acc.received_at.timestamp()
        dup = self._dedup(acc.dedup_key, acc.id, now, dedup_window)
        if dup is not None:
            first = self._inflight.get(acc.dedup_key)
            if first is not None:  # a copy acknowledged only once the first copy is on disk
                try:
                    await asyncio.shield(first)
                except AcceptFailed:  # it was not stored after all (and is forgotten): this one is new
                    return await self.accept(acc, targets, skipped, dedup_window=dedup_window)
            return AcceptResult(acc.id, True, dup)
        jobs = [(acc.id, t, "pending", now, now, now, None) for t in targets]
        jobs += [(acc.id, t, "skipped", now, 0.0, now, why) for t, why in skipped]
        row = (acc.id, acc.route, acc.group_key, acc.status, now, acc.dedup_key, acc.raw)
        fut = asyncio.get_running_loop().create_future()
        key = acc.dedup_key
        self._inflight[key] = fut
        fut.add_done_callback(lambda f: self._inflight.pop(key) if self._inflight.get(key) is f else None)
        try:
            self.accepts.submit(PendingAccept(row, jobs, fut, lambda: self._forget(acc.dedup_key, acc.id)))
            await fut
        except AcceptFailed as exc:
            raise StoreUnavailable(str(exc)) from None
        return AcceptResult(acc.id, False)

    async def due_jobs(self, target: str, now: float, limit: int) -> list[Job]:
        """Oldest pending jobs of ``target`` whose next attempt is due (FIFO)."""
        return await _jobs(await self.read(lambda conn: _due(conn, target, now, limit)))

    async def next_batch(
        self, target: str, now: float, tokens: int, max_digest: int, *, quiet: float = 0.0, max_wait: float = 0.0
    ) -> NextBatch:
        """What to send next: the oldest due job, or — when more jobs are due than ``tokens`` allow
        sending now (or more than ``max_digest``) — up to ``max_digest`` of them for one digest.
        A digest is held back (``hold_until``) while notifications keep arriving: until the newest
        pending job is ``quiet`` seconds old, at most ``max_wait`` after the oldest. One round trip;
        payloads are normalized outside the writer thread."""
        tokens = min(tokens, max_digest)  # bounds the count below for very generous limits

        def op(conn: sqlite3.Connection) -> tuple[list[tuple], float | None]:
            due = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE target = ? AND state = 'pending' "
                "AND next_attempt_at <= ? LIMIT ?)",
                (target, now, tokens + 1),
            ).fetchone()[0]
            if due == 0:
                return [], None
            if due <= tokens or due == 1:
                return _due(conn, target, now, 1), None
            if quiet > 0:
                newest, oldest = (conn.execute(
                    f"SELECT created_at FROM jobs WHERE target = ? AND state = 'pending' ORDER BY id {order} LIMIT 1",
                    (target,),
                ).fetchone()[0] for order in ("DESC", "ASC"))
                hold_until = min(newest + quiet, oldest + max_wait)
                if hold_until > now:
                    return [], hold_until
            return _due(conn, target, now, max_digest), None

        rows, hold_until = await self.read(op)
        return NextBatch(await _jobs(rows), hold_until)

    async def next_attempt_at(self, target: str) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            return conn.execute(
                "SELECT min(next_attempt_at) FROM jobs WHERE target = ? AND state = 'pending'", (target,)
            ).fetchone()[0]

        return await self.read(op)

    async def update_jobs(self, updates: Sequence[JobUpdate]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = ?, updated_at = ?, last_error = ?, digest = ? "
                "WHERE id = ?",
                [(u.state, u.attempts, u.next_attempt_at, now, u.error, int(u.digest), u.job_id) for u in updates],
            )

        await self.run(op)

    async def queue_stats(self) -> dict[str, tuple[int, float]]:
        """target → (pending jobs, created_at of the oldest pending job)."""

        def op(conn: sqlite3.Connection) -> dict[str, tuple[int, float]]:
            rows = conn.execute(
                "SELECT target, count(*), min(created_at) FROM jobs WHERE state = 'pending' GROUP BY target"
            ).fetchall()
            return {r[0]: (r[1], r[2]) for r in rows}

        return await self.read(op)

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT j.id, j.notification_id, j.target, j.attempts, j.created_at, j.updated_at, j.last_error, n.body, "
                "n.route, n.received_at "
                "FROM jobs j JOIN notifications n ON n.id = j.notification_id WHERE j.state = 'dead' "
                "ORDER BY j.updated_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                {
                    "job_id": r[0], "notification_id": r[1], "target": r[2], "attempts": r[3],
                    "accepted_at": r[4], "dead_at": r[5], "reason": r[6],
                    "notification": _describe(r[7], r[8], r[1], r[9]),
                }
                for r in rows
            ]

        return await self.read(op)

    async def retry_dead(self, job_id: int | None = None) -> int:
        """Put dead letters (one, or all) back in the queue; returns how many."""

        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            sql = "UPDATE jobs SET state = 'pending', next_attempt_at = ?, created_at = ?, attempts = 0 WHERE state = 'dead'"
            args: tuple = (now, now)
            if job_id is not None:
                sql += " AND id = ?"
                args += (job_id,)
            return conn.execute(sql, args).rowcount

        return await self.run(op)

    async def recent_notifications(self, limit: int = 50) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT id, received_at, body, route FROM notifications ORDER BY received_at DESC LIMIT ?", (limit,)
            ).fetchall()
            out = []
            for nid, received, body, route in rows:
                jobs = conn.execute(
                    "SELECT id, target, state, attempts, last_error, digest FROM jobs WHERE notification_id = ? ORDER BY id",
                    (nid,),
                ).fetchall()
                out.append({
                    "id": nid, "accepted_at": received, "notification": _describe(body, route, nid, received),
                    "deliveries": [
                        {"job_id": j[0], "target": j[1], "state": j[2], "attempts": j[3], "last_error": j[4], "digest": bool(j[5])}
                        for j in jobs
                    ],
                })
            return out

        return await self.read(op)

    async def prune(self, older_than: float, dead_older_than: float | None = None) -> int:
        """Delete (at most 5,000) notifications accepted before ``older_than`` that have no pending
        job and no dead letter given up after ``dead_older_than`` (default: no dead letter at all)."""
        dead_cutoff = float("inf") if dead_older_than is None else dead_older_than

        def op(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM notifications n WHERE received_at < ? AND NOT EXISTS ("
                "SELECT 1 FROM jobs j WHERE j.notification_id = n.id AND (j.state = 'pending' "
                "OR (j.state = 'dead' AND j.updated_at >= ?))) LIMIT 5000",
                (older_than, dead_cutoff),
            )]
            conn.executemany("DELETE FROM jobs WHERE notification_id = ?", [(i,) for i in ids])
            conn.executemany("DELETE FROM notifications WHERE id = ?", [(i,) for i in ids])
            return len(ids)

        return await self.run(op)

    async def retire_targets(self, configured: Iterable[str]) -> dict[str, int]:
        """Pending jobs of targets that are no longer configured become dead letters (listed by the
        API, re-queued by POST /api/v1/dead-letters/retry once the target is back). target → count."""
        names = sorted(set(configured))

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ", ".join("?" * len(names)) or "NULL"
            gone = dict(conn.execute(
                f"SELECT target, count(*) FROM jobs WHERE state = 'pending' AND target NOT IN ({marks}) GROUP BY target",
                names,
            ).fetchall())
            now = time.time()
            conn.executemany(
                "UPDATE jobs SET state = 'dead', updated_at = ?, last_error = ? WHERE state = 'pending' AND target = ?",
                [(now, f"target {t!r} is no longer in the configuration; re-queue (POST /api/v1/dead-letters/retry) "
                  "once it is back", t) for t in gone],
            )
            return gone

        return await self.run(op)

    async def counts(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            out = {"notifications": conn.execute("SELECT count(*) FROM notifications").fetchone()[0]}
            for state, count in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                out[f"jobs_{state}"] = count
            return out

        return await self.read(op)


@dataclass(frozen=True, slots=True)
class _Read:
    """A writer-thread operation that only queries."""

    fn: Callable[[sqlite3.Connection], Any]


def _resolve_all(items: list[tuple[asyncio.AbstractEventLoop, asyncio.Future, Any, BaseException | None]]) -> None:
    """Resolve a batch's futures with one wake-up per event loop (not one per future)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for loop, fut, value, err in items:
        by_loop.setdefault(loop, []).append((fut, value, err))

    def settle(entries: list) -> None:
        for fut, value, err in entries:
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(value)

    for loop, entries in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle, entries)
        except RuntimeError:  # loop closed
            pass


def _restore(body: str, route: str, nid: str, received_at: float) -> Notification:
    return restore(body, route, nid, datetime.fromtimestamp(received_at, UTC))


def _due(conn: sqlite3.Connection, target: str, now: float, limit: int) -> list[tuple]:
    return conn.execute(
        "SELECT j.id, j.notification_id, j.target, j.attempts, j.created_at, n.body, n.route, n.received_at "
        "FROM jobs j JOIN notifications n ON n.id = j.notification_id "
        "WHERE j.target = ? AND j.state = 'pending' AND j.next_attempt_at <= ? ORDER BY j.id LIMIT ?",
        (target, now, limit),
    ).fetchall()


def _build_jobs(rows: list[tuple]) -> list[Job]:
    return [Job(r[0], r[1], r[2], r[3], r[4], _restore(r[5], r[6], r[1], r[7])) for r in rows]


async def _jobs(rows: list[tuple]) -> list[Job]:
    """Rows → Jobs; a digest's worth of payloads is normalized in a worker thread, not on the loop."""
    if len(rows) > 1:
        return await asyncio.to_thread(_build_jobs, rows)
    return _build_jobs(rows)


def _describe(body: str, route: str, nid: str, received_at: float) -> dict[str, Any]:
    """API view of a stored notification: normalized, plus the payload exactly as received."""
    return {**notification_to_dict(_restore(body, route, nid, received_at)), "payload": json.loads(body)}
