"""The SQLite adapter: WAL, synchronous=FULL, secure_delete=ON, every write txn BEGIN IMMEDIATE.

State changes are conditional writes (``UPDATE … WHERE status = ? RETURNING``). Taking the write
lock is retried a bounded number of times; after that the caller gets ``Unavailable`` (503 with
Retry-After), never a bare error. Connections are pooled, one thread at a time each.
"""

from __future__ import annotations

import queue
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cardkeep.domain.account import Account, Mode
from cardkeep.domain.errors import Conflict, Unavailable
from cardkeep.domain.events import DomainEvent
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.payment_intent import Status as PIStatus
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.setup_intent import Status as SIStatus
from cardkeep.domain.timefmt import iso
from cardkeep.storage import codec
from cardkeep.storage.migrations import load as load_migrations

BUSY_TIMEOUT_MS = 2000
LOCK_ATTEMPTS = 4
POOL_SIZE = 16


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
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


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
    def transaction(self, *, write: bool) -> Iterator[SqliteUnitOfWork]:
        conn = self._acquire()
        try:
            self._begin(conn, write)
            uow = SqliteUnitOfWork(conn)
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


class SqliteUnitOfWork:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.accounts = _Accounts(conn)
        self.setup_intents = _SetupIntents(conn)
        self.payment_intents = _PaymentIntents(conn)
        self.vault = _Vault(conn)
        self.outbox = _Outbox(conn)
        self.sandbox_ledger = _SandboxLedger(conn)

    def commit(self) -> None:
        self._conn.execute("COMMIT")


def _account(row: tuple[str, str, str, str, int]) -> Account:
    return Account(row[0], row[1], Mode(row[2]), datetime.fromisoformat(row[3]), row[4])


_ACCOUNT_COLS = "a.id, a.name, a.mode, a.created_at, a.clock_offset_us"


class _Accounts:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def add(self, account: Account) -> None:
        self._c.execute(
            "INSERT INTO accounts (id, name, mode, created_at, clock_offset_us) VALUES (?,?,?,?,?)",
            (
                account.id,
                account.name,
                account.mode.value,
                account.created_at.isoformat(),
                account.clock_offset_us,
            ),
        )

    def get(self, account_id: str) -> Account | None:
        row = self._c.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts a WHERE a.id = ?",  # noqa: S608
            (account_id,),
        ).fetchone()
        return _account(row) if row else None

    def lease_for_sweep(self, now: datetime, until: datetime, limit: int) -> list[Account]:
        rows = self._c.execute(
            "UPDATE accounts SET sweep_leased_until_us = ? WHERE id IN ("
            " SELECT id FROM accounts WHERE sweep_leased_until_us IS NULL"
            " OR sweep_leased_until_us <= ? ORDER BY created_at LIMIT ?)"
            " RETURNING id, name, mode, created_at, clock_offset_us",
            (codec.micros(until), codec.micros(now), limit),
        ).fetchall()
        return [_account(row) for row in rows]

    def list(self) -> list[Account]:
        rows = self._c.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts a ORDER BY a.created_at"  # noqa: S608
        )
        return [_account(row) for row in rows]

    def add_key(self, key_hash: str, account_id: str, created_at: datetime) -> None:
        self._c.execute(
            "INSERT INTO api_keys (key_hash, account_id, created_at) VALUES (?,?,?)",
            (key_hash, account_id, created_at.isoformat()),
        )

    def by_key_hash(self, key_hash: str) -> tuple[str, Account] | None:
        row = self._c.execute(
            f"SELECT k.key_hash, {_ACCOUNT_COLS} FROM api_keys k "  # noqa: S608
            "JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        ).fetchone()
        return (row[0], _account(row[1:])) if row else None

    def set_clock_offset(self, account_id: str, offset_us: int) -> None:
        self._c.execute(
            "UPDATE accounts SET clock_offset_us = ? WHERE id = ? AND clock_offset_us <= ?",
            (offset_us, account_id, offset_us),
        )


class _SetupIntents:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    @staticmethod
    def _card_ends(si: SetupIntent) -> int | None:
        return codec.micros(si.card.expiry.ends_at) if si.card is not None else None

    def add(self, si: SetupIntent) -> None:
        self._c.execute(
            "INSERT INTO setup_intents (id, account_id, status, expire_at_us, card_ends_at_us, doc)"
            " VALUES (?,?,?,?,?,?)",
            (
                si.id,
                si.account_id,
                si.status.value,
                codec.micros(si.expire_at),
                self._card_ends(si),
                codec.encode(si),
            ),
        )

    def get(self, account_id: str, si_id: str) -> SetupIntent | None:
        row = self._c.execute(
            "SELECT doc FROM setup_intents WHERE id = ? AND account_id = ?", (si_id, account_id)
        ).fetchone()
        return codec.decode_si(row[0]) if row else None

    def find(self, si_id: str) -> SetupIntent | None:
        row = self._c.execute("SELECT doc FROM setup_intents WHERE id = ?", (si_id,)).fetchone()
        return codec.decode_si(row[0]) if row else None

    def update(self, si: SetupIntent, *, expected: SIStatus) -> bool:
        row = self._c.execute(
            "UPDATE setup_intents SET status = ?, card_ends_at_us = ?, doc = ? "
            "WHERE id = ? AND account_id = ? AND status = ? RETURNING id",
            (
                si.status.value,
                self._card_ends(si),
                codec.encode(si),
                si.id,
                si.account_id,
                expected.value,
            ),
        ).fetchone()
        return row is not None

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        t = codec.micros(now)
        rows = self._c.execute(
            "SELECT id FROM setup_intents WHERE account_id = ? AND ("
            " (status = 'Created' AND expire_at_us <= ?) OR"
            " (status = 'Authorized' AND card_ends_at_us <= ?)) LIMIT ?",
            (account_id, t, t, limit),
        )
        return [row[0] for row in rows]


class _PaymentIntents:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def add(self, pi: PaymentIntent) -> None:
        self._c.execute(
            "INSERT INTO payment_intents (id, account_id, status, setup_intent_id, expire_at_us,"
            " doc) VALUES (?,?,?,?,?,?)",
            (
                pi.id,
                pi.account_id,
                pi.status.value,
                pi.setup_intent_id,
                codec.micros(pi.expire_at),
                codec.encode(pi),
            ),
        )

    def get(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        row = self._c.execute(
            "SELECT doc FROM payment_intents WHERE id = ? AND account_id = ?", (pi_id, account_id)
        ).fetchone()
        return codec.decode_pi(row[0]) if row else None

    def update(self, pi: PaymentIntent, *, expected: PIStatus) -> bool:
        row = self._c.execute(
            "UPDATE payment_intents SET status = ?, doc = ? "
            "WHERE id = ? AND account_id = ? AND status = ? RETURNING id",
            (pi.status.value, codec.encode(pi), pi.id, pi.account_id, expected.value),
        ).fetchone()
        return row is not None

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        rows = self._c.execute(
            "SELECT id FROM payment_intents WHERE account_id = ? AND status = 'Created'"
            " AND expire_at_us <= ? LIMIT ?",
            (account_id, codec.micros(now), limit),
        )
        return [row[0] for row in rows]

    def lease_stuck_charges(
        self, claimed_before: datetime, now: datetime, until: datetime, limit: int
    ) -> list[PaymentIntent]:
        free = "status = ? AND (recovery_leased_until_us IS NULL OR recovery_leased_until_us <= ?)"
        candidates = [
            codec.decode_pi(row[0])
            for row in self._c.execute(
                f"SELECT doc FROM payment_intents WHERE {free} LIMIT ?",  # noqa: S608
                (PIStatus.CHARGING.value, codec.micros(now), limit),
            )
        ]
        leased = []
        for pi in candidates:
            if pi.claimed_at is not None and pi.claimed_at > claimed_before:
                continue  # young: the request that claimed it may still settle it
            row = self._c.execute(
                f"UPDATE payment_intents SET recovery_leased_until_us = ? WHERE id = ? AND {free}"  # noqa: S608
                " RETURNING id",
                (codec.micros(until), pi.id, PIStatus.CHARGING.value, codec.micros(now)),
            ).fetchone()
            if row is not None:
                leased.append(pi)
        return leased


# token, account id, key id, nonce, ciphertext, created at: opaque to storage.
VaultRow = tuple[str, str, str, bytes, bytes, datetime]


class _Vault:
    """The ``vault_cards`` table: sealed cards as opaque columns. It implements the service's
    token-only ``CardVault`` port, and the row access ``cde/`` builds its vault repository on;
    it never sees a card type or a key."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def holds(self, token: str) -> bool:
        row = self._c.execute("SELECT 1 FROM vault_cards WHERE token = ?", (token,)).fetchone()
        return row is not None

    def forget(self, token: str) -> None:
        self._c.execute("DELETE FROM vault_cards WHERE token = ?", (token,))

    def put(self, row: VaultRow) -> None:
        self._c.execute(
            "INSERT INTO vault_cards (token, account_id, key_id, nonce, ciphertext, created_at)"
            " VALUES (?,?,?,?,?,?)",
            (*row[:5], row[5].isoformat()),
        )

    def get(self, token: str) -> VaultRow | None:
        row = self._c.execute(
            "SELECT token, account_id, key_id, nonce, ciphertext, created_at FROM vault_cards"
            " WHERE token = ?",
            (token,),
        ).fetchone()
        if row is None:
            return None
        return (row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5]))

    def key_ids(self) -> set[str]:
        return {row[0] for row in self._c.execute("SELECT DISTINCT key_id FROM vault_cards")}


# idempotency key, result, message, auth code, network transaction id, created at
LedgerRow = tuple[str, str, str, str | None, str | None, datetime]


class _SandboxLedger:
    """The sandbox acquirer's ledger: opaque rows, the first one per key wins."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def first(self, row: LedgerRow) -> LedgerRow:
        """Store ``row`` unless its key has an answer already; the answer that stands."""
        self._c.execute(
            "INSERT INTO sandbox_ledger (idempotency_key, result, message, auth_code,"
            " network_transaction_id, created_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (*row[:5], row[5].isoformat()),
        )
        found = self.get(row[0])
        assert found is not None
        return found

    def get(self, key: str) -> LedgerRow | None:
        got = self._c.execute(
            "SELECT idempotency_key, result, message, auth_code, network_transaction_id,"
            " created_at FROM sandbox_ledger WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        if got is None:
            return None
        return (got[0], got[1], got[2], got[3], got[4], datetime.fromisoformat(got[5]))


class _Outbox:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def record(self, event: DomainEvent) -> None:
        self._c.execute(
            "INSERT INTO outbox (id, account_id, event, created_at, payload) VALUES (?,?,?,?,?)",
            (
                event.id,
                event.account_id,
                event.event,
                iso(event.created_at),
                codec.event_payload(event),
            ),
        )
