"""The SQLite engine: WAL, synchronous=FULL, secure_delete=ON, every write txn BEGIN IMMEDIATE.

Only connections, pragmas, transactions, locking, retries and migrations live here; the
repositories' SQL is ``storage.sql``'s, shared with PostgreSQL. Taking the write lock is retried
a bounded number of times; after that the caller gets ``Unavailable`` (503 with Retry-After),
never a bare error. Connections are pooled, one thread at a time each.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardkeep.domain.errors import Conflict, Unavailable
from cardkeep.domain.timefmt import iso
from cardkeep.storage.migrations import load as load_migrations
from cardkeep.storage.sql import SqlUnitOfWork

BUSY_TIMEOUT_MS = 2000
LOCK_ATTEMPTS = 4
POOL_SIZE = 16
WRITER_WAIT = 5.0  # seconds a write transaction may wait for this process's other writers


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(path: Path) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)  # owner-only from the first byte (WAL/SHM follow it)
    conn = _connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for mig in load_migrations("sqlite"):
            if mig.version in done:
                continue
            for statement in _statements(mig.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (mig.version, mig.name, iso(datetime.now(UTC))),
            )
            applied.append(mig.version)
        conn.execute("COMMIT")
        return applied
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _statements(sql: str) -> list[str]:
    """The statements of a migration, split at semicolons that end one (``CREATE TRIGGER``'s
    body holds semicolons of its own: a piece is added to until SQLite calls it complete)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().removesuffix(";").strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"an incomplete statement ends the migration: {pending.strip()!r}")
    return [s for s in statements if s]


def pending_migrations(path: Path) -> list[int]:
    conn = _connect(path)
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchone()
        done = (
            {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            if exists
            else set()
        )
    finally:
        conn.close()
    return [m.version for m in load_migrations("sqlite") if m.version not in done]


class SqliteStorage:
    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        lock_attempts: int = LOCK_ATTEMPTS,
    ) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._lock_attempts = lock_attempts
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._writer = threading.Lock()
        self._closed = False
        if not path.exists():
            raise RuntimeError(f"there is no database at {path}: run `cardkeep migrate`")
        missing = pending_migrations(path)
        if missing:
            raise RuntimeError(
                f"the database at {path} needs migrations {missing}: run `cardkeep migrate`"
            )

    def _acquire(self) -> sqlite3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return _connect(self.path, self._busy_timeout_ms)

    def _release(self, conn: sqlite3.Connection) -> None:
        if self._closed or self._pool.qsize() >= POOL_SIZE:
            conn.close()
        else:
            self._pool.put(conn)

    def _begin(self, conn: sqlite3.Connection, write: bool) -> None:
        statement = "BEGIN IMMEDIATE" if write else "BEGIN"
        for attempt in range(self._lock_attempts):
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if attempt == self._lock_attempts - 1:
                    raise Unavailable("The database is busy; retry shortly.") from exc
                time.sleep(0.01 * (attempt + 1))

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[SqlUnitOfWork]:
        if not write:
            with self._transaction(write=False) as uow:
                yield uow
            return
        # Writers of this process queue here rather than in SQLite's busy handler, which sleeps
        # in growing steps; other processes still meet at BEGIN IMMEDIATE.
        if not self._writer.acquire(timeout=WRITER_WAIT):
            raise Unavailable("The database is busy; retry shortly.")
        try:
            with self._transaction(write=True) as uow:
                yield uow
        finally:
            self._writer.release()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[SqlUnitOfWork]:
        conn = self._acquire()
        try:
            self._begin(conn, write)
            uow = unit_of_work(conn)
            try:
                yield uow
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise Unavailable("The database is busy; retry shortly.") from exc
                raise
            except sqlite3.IntegrityError as exc:  # translated where it enters: never a bare 500
                raise Conflict("The change conflicts with a record already stored.") from exc
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            self._release(conn)

    def checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes (``PRAGMA
        wal_checkpoint(TRUNCATE)``), so the old versions of changed pages stop being kept there;
        False when a reader still needs part of it (run it again later). Freed space is zeroed
        as it is freed (``secure_delete``), so no VACUUM is needed for that."""
        conn = _connect(self.path, self._busy_timeout_ms)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        return int(busy) == 0

    def ping(self) -> None:
        conn = self._acquire()
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            self._release(conn)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


class _Db:
    """The driver seam over one SQLite connection: ``?`` placeholders are SQLite's own, and no
    row locks are needed (a write transaction holds the database's write lock)."""

    skip_locked = ""
    lock_nowait = ""
    lock_wait = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)


def unit_of_work(conn: sqlite3.Connection) -> SqlUnitOfWork:
    return SqlUnitOfWork(_Db(conn), lambda: conn.execute("COMMIT"))
