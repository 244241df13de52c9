"""The PostgreSQL engine: a psycopg 3 connection pool, READ COMMITTED transactions, timeouts,
retries and migrations under an advisory lock.

Only connections, transactions, error translation and migrations live here; the repositories'
SQL is ``storage.sql``'s, shared with SQLite (``?`` placeholders become ``%s``; claims of leased
work add ``FOR UPDATE SKIP LOCKED``). State changes are conditional writes, so READ COMMITTED is
enough: a writer that loses a race finds the row changed and changes nothing.

Errors are translated where they enter: a unique or foreign-key violation is ``Conflict``; a
serialization failure, deadlock, lock or statement timeout is ``Busy`` (the use case retries it a
bounded number of times); a database that does not answer (connect timeout, pool timeout, lost
connection) is ``Unavailable``: all end in 503 with Retry-After, never a bare 500, and never a
wait beyond the statement timeout. The pool reconnects by itself when the database comes back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg
from psycopg_pool import ConnectionPool, PoolTimeout

from cardkeep.domain.errors import Busy, Conflict, RowLocked, Unavailable
from cardkeep.storage.migrations import load as load_migrations
from cardkeep.storage.sql import SqlUnitOfWork

# Any number; the same in every cardkeep process that migrates this database.
MIGRATION_LOCK = 0x63617264  # "card"
UNAVAILABLE = "The database does not answer; retry shortly."
# The tables ``vacuum`` accepts (a name is never taken from input).
VACUUMABLE = frozenset({"setup_intents", "payment_intents", "vault_cards"})


@dataclass(frozen=True)
class PoolSettings:
    min_size: int = 2
    max_size: int = 10
    connect_timeout: float = 5.0  # seconds to open a connection or wait for a free one
    statement_timeout: float = 5.0  # seconds any one statement (or lock wait) may take


def _kwargs(settings: PoolSettings) -> dict[str, Any]:
    ms = int(settings.statement_timeout * 1000)
    return {
        "connect_timeout": max(1, round(settings.connect_timeout)),
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms} "
        "-c idle_in_transaction_session_timeout=60000 -c TimeZone=UTC",
        "application_name": "cardkeep",
    }


class _Db:
    """The driver seam over one psycopg connection."""

    skip_locked = " FOR UPDATE SKIP LOCKED"
    lock_nowait = " FOR UPDATE NOWAIT"
    lock_wait = " FOR UPDATE"
    _rewritten: dict[str, str] = {}

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        query = self._rewritten.get(sql)
        if query is None:
            query = self._rewritten.setdefault(sql, sql.replace("?", "%s"))
        return self._conn.execute(query, params)


def _translate(exc: psycopg.Error) -> Exception:
    if isinstance(exc, pg.IntegrityError):
        return Conflict("The change conflicts with a record already stored.")
    if isinstance(exc, pg.LockNotAvailable) and "could not obtain lock" in str(exc):
        return RowLocked("Another transaction is claiming this row.")  # NOWAIT
    if isinstance(
        exc,
        pg.SerializationFailure | pg.DeadlockDetected | pg.LockNotAvailable | pg.QueryCanceled,
    ):
        return Busy("The database is busy; retry shortly.")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Unavailable(UNAVAILABLE)
    return exc


class PostgresStorage:
    def __init__(self, url: str, settings: PoolSettings | None = None) -> None:
        self.url = url
        self.settings = settings or PoolSettings()
        pending = pending_migrations(url, self.settings)
        if pending:
            raise RuntimeError(
                f"the PostgreSQL database needs migrations {pending}: run `cardkeep migrate`"
            )
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            kwargs=_kwargs(self.settings),
            timeout=self.settings.connect_timeout,
            check=ConnectionPool.check_connection,
            name="cardkeep",
            open=False,
        )
        self._pool.open(wait=False)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[SqlUnitOfWork]:
        try:
            with self._pool.connection() as conn:
                try:
                    conn.read_only = not write
                    yield SqlUnitOfWork(_Db(conn), conn.commit)
                finally:
                    if not conn.closed:
                        conn.rollback()  # a no-op after commit; undoes anything uncommitted
        except PoolTimeout as exc:
            raise Unavailable(UNAVAILABLE) from exc
        except psycopg.Error as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def vacuum(self, tables: tuple[str, ...]) -> None:
        """``VACUUM (ANALYZE)`` each of ``tables`` (cardkeep's own names only), on a connection
        of its own in autocommit, without the statement timeout: the dead row versions an update
        left behind are removed from the tables' pages (their bytes are overwritten only as the
        space is reused; WAL segments and backups keep what they recorded)."""
        for table in tables:
            if table not in VACUUMABLE:
                raise ValueError(f"not a table of cardkeep's: {table!r}")
        with _connect(self.url, self.settings) as conn:
            conn.execute("SET statement_timeout = 0")
            for table in tables:
                conn.execute(f"VACUUM (ANALYZE) {table}".encode())

    def ping(self) -> None:
        with self.transaction(write=False) as uow:
            uow.accounts.get("")

    def close(self) -> None:
        self._pool.close()


def _connect(url: str, settings: PoolSettings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True, **_kwargs(settings))
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"cannot reach the PostgreSQL database: {exc}".strip()) from exc


def _applied(conn: psycopg.Connection[Any]) -> set[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(url: str, settings: PoolSettings | None = None) -> list[int]:
    with _connect(url, settings or PoolSettings()) as conn:
        done = _applied(conn)
    return [m.version for m in load_migrations("postgres") if m.version not in done]


def migrate(url: str, settings: PoolSettings | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction, under a session advisory lock so
    that instances starting together do not race; the versions applied now."""
    applied = []
    with _connect(url, settings or PoolSettings()) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at_us BIGINT NOT NULL)"
            )
            done = _applied(conn)
            for mig in load_migrations("postgres"):
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES"
                        " (%s, %s, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)",
                        (mig.version, mig.name),
                    )
                applied.append(mig.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied
