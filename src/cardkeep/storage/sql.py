"""The repositories' SQL, written once for every engine, over a small driver seam (``Db``).

The engines differ only where the seam says: placeholders are written ``?`` here (the PostgreSQL
driver rewrites them), and ``Db.skip_locked`` is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and empty
on SQLite (whose write transactions are serialised anyway). Statuses are bound as parameters,
never SQL literals; every instant is stored as integer microseconds (``codec.micros``); documents
carry a schema version (``codec``). Connections, transactions, locking and retries belong to the
engine modules (``sqlite``, ``postgres``), never to this one. ``Db.lock_nowait`` locks the row a
claim reads (PostgreSQL: ``FOR UPDATE NOWAIT``, a concurrent claim fails at once instead of
waiting for it); ``Db.lock_wait`` locks it and waits (``FOR UPDATE``, bounded by the lock
timeout): refund claims queue on their payment intent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from cardkeep.domain.account import Account, ApiKey, Mode
from cardkeep.domain.audit import AuditEntry
from cardkeep.domain.errors import Conflict
from cardkeep.domain.events import DomainEvent
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.payment_intent import Status as PIStatus
from cardkeep.domain.refund import Refund
from cardkeep.domain.refund import Status as RefundStatus
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.setup_intent import Status as SIStatus
from cardkeep.domain.webhooks import AttemptOutcome, Delivery, DeliveryStatus
from cardkeep.service.ports import (
    CardAttempt,
    CardResult,
    IdempotencyRecord,
    SealedSecret,
    StoredResponse,
    StoredSubscription,
)
from cardkeep.storage import codec
from cardkeep.storage.codec import from_micros, micros

# token, account id, key id, nonce, ciphertext, created at: opaque to storage.
VaultRow = tuple[str, str, str, bytes, bytes, datetime]
# id, account id, KEK id, wrapped key, status, created at: opaque to storage.
DekRow = tuple[str, str, str, bytes, str, datetime]
# The statuses of a data-encryption key (cde/vault_store.DekStatus).
_CURRENT, _PREVIOUS, _RETIRED = "current", "previous", "retired"
# idempotency key, result, message, auth code, network transaction id, created at, amount (minor
# units), capture key (what a refund or reversal returns money from), kind (charge/refund/reversal)
LedgerRow = tuple[
    str, str, str, str | None, str | None, datetime, int | None, str | None, str | None
]


def _storable(text: str) -> bool:
    """An id that could be stored at all: PostgreSQL text holds no NUL character, so an id with
    one names no record, on every engine alike."""
    return "\x00" not in text


class Rows(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """One connection inside one transaction, as the repositories see it."""

    skip_locked: str
    lock_nowait: str
    lock_wait: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...


class SqlUnitOfWork:
    """The repositories over one transaction; ``commit`` is the engine's."""

    def __init__(self, db: Db, commit: Any) -> None:
        self._commit = commit
        self.accounts = Accounts(db)
        self.setup_intents = SetupIntents(db)
        self.payment_intents = PaymentIntents(db)
        self.vault = Vault(db)
        self.outbox = Outbox(db)
        self.sandbox_ledger = SandboxLedger(db)
        self.idempotency = Idempotency(db)
        self.webhooks = WebhookSubscriptions(db)
        self.deliveries = Deliveries(db)
        self.refunds = Refunds(db)
        self.audit = AuditLog(db)
        self.card_attempts = CardAttempts(db)
        self.retention = Retention(db)
        self.key_checks = KeyChecks(db)

    def commit(self) -> None:
        self._commit()


_ACCOUNT_COLS = "id, name, mode, created_at_us, clock_offset_us"


def _account(row: Sequence[Any]) -> Account:
    return Account(row[0], row[1], Mode(row[2]), from_micros(row[3]), int(row[4]))


_KEY_COLS = "id, account_id, created_at_us, revoked_at_us"


def _api_key(row: Sequence[Any]) -> ApiKey:
    revoked = None if row[3] is None else from_micros(row[3])
    return ApiKey(row[0], row[1], from_micros(row[2]), revoked)


class Accounts:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, account: Account) -> None:
        self._db.execute(
            f"INSERT INTO accounts ({_ACCOUNT_COLS}) VALUES (?,?,?,?,?)",  # noqa: S608
            (
                account.id,
                account.name,
                account.mode.value,
                micros(account.created_at),
                account.clock_offset_us,
            ),
        )

    def get(self, account_id: str) -> Account | None:
        if not _storable(account_id):
            return None
        row = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?",  # noqa: S608
            (account_id,),
        ).fetchone()
        return _account(row) if row else None

    def lease_for_sweep(self, now: datetime, until: datetime, limit: int) -> list[Account]:
        rows = self._db.execute(
            "UPDATE accounts SET sweep_leased_until_us = ? WHERE id IN ("  # noqa: S608
            " SELECT id FROM accounts WHERE sweep_leased_until_us IS NULL"
            f" OR sweep_leased_until_us <= ? ORDER BY created_at_us LIMIT ?{self._db.skip_locked})"
            f" RETURNING {_ACCOUNT_COLS}",
            (micros(until), micros(now), limit),
        ).fetchall()
        return [_account(row) for row in rows]

    def list(self) -> list[Account]:
        rows = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY created_at_us, id"  # noqa: S608
        ).fetchall()
        return [_account(row) for row in rows]

    def add_key(self, key_id: str, key_hash: str, account_id: str, created_at: datetime) -> None:
        self._db.execute(
            "INSERT INTO api_keys (id, key_hash, account_id, created_at_us) VALUES (?,?,?,?)",
            (key_id, key_hash, account_id, micros(created_at)),
        )

    def by_key_hash(self, key_hash: str) -> tuple[str, Account] | None:
        row = self._db.execute(
            "SELECT k.key_hash, a.id, a.name, a.mode, a.created_at_us, a.clock_offset_us"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
            " WHERE k.key_hash = ? AND k.revoked_at_us IS NULL",
            (key_hash,),
        ).fetchone()
        return (row[0], _account(row[1:])) if row else None

    def keys(self, account_id: str) -> tuple[ApiKey, ...]:
        rows = self._db.execute(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE account_id = ?"  # noqa: S608
            " ORDER BY created_at_us, id",
            (account_id,),
        ).fetchall()
        return tuple(_api_key(row) for row in rows)

    def key(self, key_id: str) -> ApiKey | None:
        if not _storable(key_id):
            return None
        row = self._db.execute(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ?",  # noqa: S608
            (key_id,),
        ).fetchone()
        return _api_key(row) if row else None

    def key_of_hash(self, key_hash: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE key_hash = ?",  # noqa: S608
            (key_hash,),
        ).fetchone()
        return _api_key(row) if row else None

    def revoke_key(self, key_id: str, revoked_at: datetime) -> None:
        self._db.execute(
            "UPDATE api_keys SET revoked_at_us = ? WHERE id = ? AND revoked_at_us IS NULL",
            (micros(revoked_at), key_id),
        )

    def origins(self, account_id: str) -> tuple[str, ...]:
        row = self._db.execute(
            "SELECT allowed_origins FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        return tuple(o for o in str(row[0]).split(",") if o) if row else ()

    def set_origins(self, account_id: str, origins: tuple[str, ...]) -> None:
        self._db.execute(
            "UPDATE accounts SET allowed_origins = ? WHERE id = ?", (",".join(origins), account_id)
        )

    def set_clock_offset(self, account_id: str, offset_us: int) -> None:
        self._db.execute(
            "UPDATE accounts SET clock_offset_us = ? WHERE id = ? AND clock_offset_us <= ?",
            (offset_us, account_id, offset_us),
        )


def _card_ends(si: SetupIntent) -> int | None:
    return micros(si.card.expiry.ends_at) if si.card is not None else None


class SetupIntents:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, si: SetupIntent) -> None:
        self._db.execute(
            "INSERT INTO setup_intents (id, account_id, status, expire_at_us, card_ends_at_us, doc)"
            " VALUES (?,?,?,?,?,?)",
            (
                si.id,
                si.account_id,
                si.status.value,
                micros(si.expire_at),
                _card_ends(si),
                codec.encode(si),
            ),
        )

    def get(self, account_id: str, si_id: str) -> SetupIntent | None:
        if not _storable(si_id):
            return None
        row = self._db.execute(
            "SELECT doc FROM setup_intents WHERE id = ? AND account_id = ?", (si_id, account_id)
        ).fetchone()
        return codec.decode_si(row[0]) if row else None

    def find(self, si_id: str) -> SetupIntent | None:
        if not _storable(si_id):
            return None
        row = self._db.execute("SELECT doc FROM setup_intents WHERE id = ?", (si_id,)).fetchone()
        return codec.decode_si(row[0]) if row else None

    def update(self, si: SetupIntent, *, expected: SIStatus) -> bool:
        row = self._db.execute(
            "UPDATE setup_intents SET status = ?, card_ends_at_us = ?, doc = ? "
            "WHERE id = ? AND account_id = ? AND status = ? RETURNING id",
            (
                si.status.value,
                _card_ends(si),
                codec.encode(si),
                si.id,
                si.account_id,
                expected.value,
            ),
        ).fetchone()
        return row is not None

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        t = micros(now)
        rows = self._db.execute(
            "SELECT id FROM setup_intents WHERE account_id = ? AND ("
            " (status = ? AND expire_at_us <= ?) OR (status = ? AND card_ends_at_us <= ?))"
            " LIMIT ?",
            (account_id, SIStatus.CREATED.value, t, SIStatus.AUTHORIZED.value, t, limit),
        ).fetchall()
        return [row[0] for row in rows]


class PaymentIntents:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, pi: PaymentIntent) -> None:
        self._db.execute(
            "INSERT INTO payment_intents (id, account_id, status, setup_intent_id, expire_at_us,"
            " doc) VALUES (?,?,?,?,?,?)",
            (
                pi.id,
                pi.account_id,
                pi.status.value,
                pi.setup_intent_id,
                micros(pi.expire_at),
                codec.encode(pi),
            ),
        )

    def get(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        if not _storable(pi_id):
            return None
        row = self._db.execute(
            "SELECT doc FROM payment_intents WHERE id = ? AND account_id = ?", (pi_id, account_id)
        ).fetchone()
        return codec.decode_pi(row[0]) if row else None

    def get_for_claim(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        if not _storable(pi_id):
            return None
        row = self._db.execute(
            "SELECT doc FROM payment_intents WHERE id = ? AND account_id = ?"  # noqa: S608
            f"{self._db.lock_nowait}",
            (pi_id, account_id),
        ).fetchone()
        return codec.decode_pi(row[0]) if row else None

    def get_for_update(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        if not _storable(pi_id):
            return None
        row = self._db.execute(
            "SELECT doc FROM payment_intents WHERE id = ? AND account_id = ?"  # noqa: S608
            f"{self._db.lock_wait}",
            (pi_id, account_id),
        ).fetchone()
        return codec.decode_pi(row[0]) if row else None

    def update(self, pi: PaymentIntent, *, expected: PIStatus) -> bool:
        row = self._db.execute(
            "UPDATE payment_intents SET status = ?, doc = ? "
            "WHERE id = ? AND account_id = ? AND status = ? RETURNING id",
            (pi.status.value, codec.encode(pi), pi.id, pi.account_id, expected.value),
        ).fetchone()
        return row is not None

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM payment_intents WHERE account_id = ? AND status = ?"
            " AND expire_at_us <= ? LIMIT ?",
            (account_id, PIStatus.CREATED.value, micros(now), limit),
        ).fetchall()
        return [row[0] for row in rows]

    def lease_stuck_charges(
        self,
        due: Callable[[PaymentIntent], bool],
        now: datetime,
        until: datetime,
        limit: int,
    ) -> list[PaymentIntent]:
        free = "status = ? AND (recovery_leased_until_us IS NULL OR recovery_leased_until_us <= ?)"
        candidates = [
            codec.decode_pi(row[0])
            for row in self._db.execute(
                f"SELECT doc FROM payment_intents WHERE {free} LIMIT ?{self._db.skip_locked}",  # noqa: S608
                (PIStatus.CHARGING.value, micros(now), limit),
            ).fetchall()
        ]
        leased = []
        for pi in candidates:
            if not due(pi):
                continue  # young: the request that claimed it may still settle it
            row = self._db.execute(
                f"UPDATE payment_intents SET recovery_leased_until_us = ? WHERE id = ? AND {free}"  # noqa: S608
                " RETURNING id",
                (micros(until), pi.id, PIStatus.CHARGING.value, micros(now)),
            ).fetchone()
            if row is not None:
                leased.append(pi)
        return leased


class Vault:
    """The ``vault_cards`` table: sealed cards as opaque columns. It implements the service's
    token-only ``CardVault`` port, and the row access ``cde/`` builds its vault repository on;
    it never sees a card type or a key."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def holds(self, token: str) -> bool:
        if not _storable(token):
            return False
        row = self._db.execute("SELECT 1 FROM vault_cards WHERE token = ?", (token,)).fetchone()
        return row is not None

    def forget(self, token: str) -> None:
        self._db.execute("DELETE FROM vault_cards WHERE token = ?", (token,))

    def put(self, row: VaultRow) -> None:
        self._db.execute(
            "INSERT INTO vault_cards (token, account_id, key_id, nonce, ciphertext, created_at_us)"
            " VALUES (?,?,?,?,?,?)",
            (*row[:5], micros(row[5])),
        )

    def get(self, token: str) -> VaultRow | None:
        row = self._db.execute(
            "SELECT token, account_id, key_id, nonce, ciphertext, created_at_us FROM vault_cards"
            " WHERE token = ?",
            (token,),
        ).fetchone()
        if row is None:
            return None
        return (row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), from_micros(row[5]))

    def key_ids(self) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT key_id FROM vault_cards").fetchall()
        return {row[0] for row in rows}

    # The rotation of vault keys (cde/rotation.py): cards by account and key, re-sealed only if
    # still under the key they were read under; wrapped data-encryption keys (``vault_deks``).

    _CARD_COLS = "token, account_id, key_id, nonce, ciphertext, created_at_us"
    _DEK_COLS = "id, account_id, kek_id, wrapped, status, created_at_us"

    @staticmethod
    def _card(row: Sequence[Any]) -> VaultRow:
        return (row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), from_micros(row[5]))

    @staticmethod
    def _dek(row: Sequence[Any]) -> DekRow:
        return (row[0], row[1], row[2], bytes(row[3]), row[4], from_micros(row[5]))

    def card_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT key_id, COUNT(*) FROM vault_cards GROUP BY key_id")
        return {row[0]: int(row[1]) for row in rows.fetchall()}

    def cards_not_under(
        self, account_id: str, key_id: str, after: str, limit: int
    ) -> list[VaultRow]:
        rows = self._db.execute(
            f"SELECT {self._CARD_COLS} FROM vault_cards WHERE account_id = ?"  # noqa: S608
            " AND key_id <> ? AND token > ? ORDER BY token LIMIT ?",
            (account_id, key_id, after, limit),
        ).fetchall()
        return [self._card(row) for row in rows]

    def reseal(self, token: str, old_key_id: str, row: VaultRow) -> bool:
        found = self._db.execute(
            "UPDATE vault_cards SET key_id = ?, nonce = ?, ciphertext = ?"
            " WHERE token = ? AND key_id = ? RETURNING token",
            (row[2], row[3], row[4], token, old_key_id),
        ).fetchone()
        return found is not None

    def kek_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT kek_id, COUNT(*) FROM vault_deks GROUP BY kek_id")
        return {row[0]: int(row[1]) for row in rows.fetchall()}

    def dek_add(self, row: DekRow) -> None:
        self._db.execute(
            f"INSERT INTO vault_deks ({self._DEK_COLS}) VALUES (?,?,?,?,?,?)",  # noqa: S608
            (*row[:5], micros(row[5])),
        )

    def dek_get(self, dek_id: str) -> DekRow | None:
        if not _storable(dek_id):
            return None
        row = self._db.execute(
            f"SELECT {self._DEK_COLS} FROM vault_deks WHERE id = ?",  # noqa: S608
            (dek_id,),
        ).fetchone()
        return None if row is None else self._dek(row)

    def dek_current(self, account_id: str, *, lock: bool) -> DekRow | None:
        # A shared lock where the engine has row locks (PostgreSQL: ``lock_wait`` is FOR UPDATE
        # there, empty on SQLite, whose write transactions are serialised).
        share = " FOR SHARE" if lock and self._db.lock_wait else ""
        row = self._db.execute(
            f"SELECT {self._DEK_COLS} FROM vault_deks"  # noqa: S608
            f" WHERE account_id = ? AND status = ?{share}",
            (account_id, _CURRENT),
        ).fetchone()
        return None if row is None else self._dek(row)

    def dek_replace_current(self, account_id: str, row: DekRow) -> None:
        self._db.execute(
            "UPDATE vault_deks SET status = ? WHERE account_id = ? AND status = ?",
            (_PREVIOUS, account_id, _CURRENT),
        )
        self.dek_add(row)

    def deks(self, after: str, limit: int) -> list[DekRow]:
        rows = self._db.execute(
            f"SELECT {self._DEK_COLS} FROM vault_deks WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after, limit),
        ).fetchall()
        return [self._dek(row) for row in rows]

    def deks_not_under(self, kek_id: str, after: str, limit: int) -> list[DekRow]:
        rows = self._db.execute(
            f"SELECT {self._DEK_COLS} FROM vault_deks"  # noqa: S608
            " WHERE kek_id <> ? AND id > ? ORDER BY id LIMIT ?",
            (kek_id, after, limit),
        ).fetchall()
        return [self._dek(row) for row in rows]

    def dek_rewrap(self, dek_id: str, old_kek_id: str, kek_id: str, wrapped: bytes) -> bool:
        found = self._db.execute(
            "UPDATE vault_deks SET kek_id = ?, wrapped = ? WHERE id = ? AND kek_id = ?"
            " RETURNING id",
            (kek_id, wrapped, dek_id, old_kek_id),
        ).fetchone()
        return found is not None

    def dek_retire_unused(self, account_id: str) -> list[str]:
        rows = self._db.execute(
            "UPDATE vault_deks SET status = ? WHERE account_id = ? AND status = ?"
            " AND NOT EXISTS (SELECT 1 FROM vault_cards WHERE vault_cards.key_id = vault_deks.id)"
            " RETURNING id",
            (_RETIRED, account_id, _PREVIOUS),
        ).fetchall()
        return sorted(row[0] for row in rows)

    def dek_delete_unused(self, dek_id: str) -> bool:
        found = self._db.execute(
            "DELETE FROM vault_deks WHERE id = ? AND status <> ?"
            " AND NOT EXISTS (SELECT 1 FROM vault_cards WHERE vault_cards.key_id = vault_deks.id)"
            " RETURNING id",
            (dek_id, _CURRENT),
        ).fetchone()
        return found is not None

    def dek_accounts(self, after: str, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT account_id FROM vault_deks WHERE account_id > ?"
            " UNION SELECT account_id FROM vault_cards WHERE account_id > ?"
            " ORDER BY account_id LIMIT ?",
            (after, after, limit),
        ).fetchall()
        return [row[0] for row in rows]


class SandboxLedger:
    """The sandbox acquirer's ledger: opaque rows, the first one per key wins."""

    _COLS = (
        "idempotency_key, result, message, auth_code, network_transaction_id, created_at_us,"
        " amount, capture_key, kind"
    )

    def __init__(self, db: Db) -> None:
        self._db = db

    def first(self, row: LedgerRow) -> LedgerRow:
        """Store ``row`` unless its key has an answer already; the answer that stands."""
        self._db.execute(
            f"INSERT INTO sandbox_ledger ({self._COLS}) VALUES (?,?,?,?,?,?,?,?,?)"  # noqa: S608
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (*row[:5], micros(row[5]), *row[6:]),
        )
        found = self.get(row[0])
        assert found is not None
        return found

    def get(self, key: str) -> LedgerRow | None:
        got = self._db.execute(
            f"SELECT {self._COLS} FROM sandbox_ledger WHERE idempotency_key = ?",  # noqa: S608
            (key,),
        ).fetchone()
        if got is None:
            return None
        amount = None if got[6] is None else int(got[6])
        return (got[0], got[1], got[2], got[3], got[4], from_micros(got[5]), amount, *got[7:])

    def hold(self, key: str) -> None:
        """Lock the row of ``key`` until the transaction ends (on PostgreSQL a row lock that a
        concurrent holder waits for; SQLite's write transactions are serialised already)."""
        self._db.execute("UPDATE sandbox_ledger SET kind = kind WHERE idempotency_key = ?", (key,))

    def refunded(self, capture_key: str, kinds: tuple[str, ...], result: str) -> int:
        """The total amount of the rows of these kinds with this result that reference
        ``capture_key``."""
        marks = ",".join("?" * len(kinds))
        got = self._db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM sandbox_ledger"  # noqa: S608
            f" WHERE capture_key = ? AND result = ? AND kind IN ({marks})",
            (capture_key, result, *kinds),
        ).fetchone()
        return int(got[0])


class Outbox:
    def __init__(self, db: Db) -> None:
        self._db = db

    def record(self, event: DomainEvent) -> None:
        self._db.execute(
            "INSERT INTO outbox (id, account_id, event, created_at_us, payload) VALUES (?,?,?,?,?)",
            (
                event.id,
                event.account_id,
                event.event,
                micros(event.created_at),
                event.payload(),
            ),
        )
        self._db.execute(
            "INSERT INTO webhook_deliveries (id, account_id, subscription_id, event_id, event,"
            " status, attempts, next_attempt_at_us, created_at_us)"
            " SELECT 'whd_' || substr(?, 5) || '_' || substr(s.id, 4), s.account_id, s.id, ?, ?,"
            " ?, 0, ?, ? FROM webhook_subscriptions s WHERE s.account_id = ? AND s.events LIKE ?",
            (
                event.id,
                event.id,
                event.event,
                DeliveryStatus.PENDING.value,
                micros(event.created_at),
                micros(event.created_at),
                event.account_id,
                f"%,{event.event},%",
            ),
        )


RUNNING, DONE = "running", "done"


class Idempotency:
    def __init__(self, db: Db) -> None:
        self._db = db

    def claim(
        self, scope: str, key: str, fingerprint: str, now: datetime, lease_until: datetime
    ) -> bool:
        row = self._db.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state, leased_until_us,"
            " created_at_us) VALUES (?,?,?,?,?,?) ON CONFLICT (scope, key) DO NOTHING"
            " RETURNING scope",
            (scope, key, fingerprint, RUNNING, micros(lease_until), micros(now)),
        ).fetchone()
        return row is not None

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        row = self._db.execute(
            "SELECT fingerprint, state, leased_until_us, created_at_us, status, media_type, body"
            " FROM idempotency_keys WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        if row is None:
            return None
        done = row[1] == DONE
        response = StoredResponse(int(row[4]), row[5], bytes(row[6])) if done else None
        leased = from_micros(row[2]) if row[2] is not None else None
        return IdempotencyRecord(row[0], done, leased, from_micros(row[3]), response)

    def take_over(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        lease_until: datetime,
        expired_before: datetime,
    ) -> bool:
        row = self._db.execute(
            "UPDATE idempotency_keys SET fingerprint = ?, state = ?, leased_until_us = ?,"
            " status = NULL, media_type = NULL, body = NULL, created_at_us = ?"
            " WHERE scope = ? AND key = ? AND ((state = ? AND fingerprint = ?"
            " AND leased_until_us <= ?) OR created_at_us <= ?) RETURNING scope",
            (
                fingerprint,
                RUNNING,
                micros(lease_until),
                micros(now),
                scope,
                key,
                RUNNING,
                fingerprint,
                micros(now),
                micros(expired_before),
            ),
        ).fetchone()
        return row is not None

    def complete(self, scope: str, key: str, fingerprint: str, response: StoredResponse) -> bool:
        row = self._db.execute(
            "UPDATE idempotency_keys SET state = ?, status = ?, media_type = ?, body = ?,"
            " leased_until_us = NULL WHERE scope = ? AND key = ? AND fingerprint = ? AND state = ?"
            " RETURNING scope",
            (
                DONE,
                response.status,
                response.media_type,
                response.body,
                scope,
                key,
                fingerprint,
                RUNNING,
            ),
        ).fetchone()
        return row is not None

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        self._db.execute(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND fingerprint = ?"
            " AND state = ?",
            (scope, key, fingerprint, RUNNING),
        )

    def prune(self, created_before: datetime) -> int:
        rows = self._db.execute(
            "DELETE FROM idempotency_keys WHERE created_at_us < ? RETURNING scope",
            (micros(created_before),),
        ).fetchall()
        return len(rows)


def _events_text(events: Sequence[str]) -> str:
    """Event names as stored: ``,a,b,``, so one ``LIKE '%,name,%'`` matches a name exactly."""
    return "," + ",".join(events) + ","


_SUB_COLS = "id, account_id, events, url, description, created_at_us, updated_at_us"


class WebhookSubscriptions:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, sub: StoredSubscription) -> None:
        taken = self._db.execute(
            "SELECT 1 FROM webhook_subscriptions WHERE account_id = ? AND url = ?",
            (sub.account_id, sub.url),
        ).fetchone()
        if taken:
            raise Conflict("A subscription to this URL exists already.")
        self._db.execute(
            f"INSERT INTO webhook_subscriptions ({_SUB_COLS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
            (
                sub.id,
                sub.account_id,
                _events_text(sub.events),
                sub.url,
                sub.description,
                micros(sub.created_at),
                micros(sub.updated_at),
            ),
        )
        self._put_secrets(sub)

    def _put_secrets(self, sub: StoredSubscription) -> None:
        self._db.execute("DELETE FROM webhook_secrets WHERE subscription_id = ?", (sub.id,))
        for secret in sub.secrets:
            self._db.execute(
                "INSERT INTO webhook_secrets (id, subscription_id, sealed, is_active,"
                " created_at_us) VALUES (?,?,?,?,?)",
                (
                    secret.id,
                    sub.id,
                    secret.sealed,
                    int(secret.is_active),
                    micros(secret.created_at),
                ),
            )

    def _load(self, rows: list[Any]) -> list[StoredSubscription]:
        subs = []
        for row in rows:
            secrets = self._db.execute(
                "SELECT id, sealed, created_at_us, is_active FROM webhook_secrets"
                " WHERE subscription_id = ? ORDER BY created_at_us, id",
                (row[0],),
            ).fetchall()
            subs.append(
                StoredSubscription(
                    id=row[0],
                    account_id=row[1],
                    events=tuple(e for e in str(row[2]).split(",") if e),
                    url=row[3],
                    description=row[4],
                    secrets=tuple(
                        SealedSecret(s[0], bytes(s[1]), from_micros(s[2]), bool(s[3]))
                        for s in secrets
                    ),
                    created_at=from_micros(row[5]),
                    updated_at=from_micros(row[6]),
                )
            )
        return subs

    def list(self, account_id: str) -> list[StoredSubscription]:
        rows = self._db.execute(
            f"SELECT {_SUB_COLS} FROM webhook_subscriptions WHERE account_id = ?"  # noqa: S608
            " ORDER BY created_at_us, id",
            (account_id,),
        ).fetchall()
        return self._load(rows)

    def get(self, account_id: str, sub_id: str) -> StoredSubscription | None:
        found = self.find(sub_id)
        return found if found is not None and found.account_id == account_id else None

    def find(self, sub_id: str) -> StoredSubscription | None:
        if not _storable(sub_id):
            return None
        rows = self._db.execute(
            f"SELECT {_SUB_COLS} FROM webhook_subscriptions WHERE id = ?",  # noqa: S608
            (sub_id,),
        ).fetchall()
        found = self._load(rows)
        return found[0] if found else None

    def save(self, sub: StoredSubscription) -> None:
        taken = self._db.execute(
            "SELECT 1 FROM webhook_subscriptions WHERE account_id = ? AND url = ? AND id <> ?",
            (sub.account_id, sub.url, sub.id),
        ).fetchone()
        if taken:
            raise Conflict("A subscription to this URL exists already.")
        self._db.execute(
            "UPDATE webhook_subscriptions SET events = ?, url = ?, description = ?,"
            " updated_at_us = ? WHERE id = ? AND account_id = ?",
            (
                _events_text(sub.events),
                sub.url,
                sub.description,
                micros(sub.updated_at),
                sub.id,
                sub.account_id,
            ),
        )
        self._put_secrets(sub)

    def delete(self, account_id: str, sub_id: str) -> bool:
        if self.get(account_id, sub_id) is None:
            return False
        self._db.execute(
            "DELETE FROM webhook_deliveries WHERE subscription_id = ? AND status = ?",
            (sub_id, DeliveryStatus.PENDING.value),
        )
        self._db.execute("DELETE FROM webhook_secrets WHERE subscription_id = ?", (sub_id,))
        self._db.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (sub_id,))
        return True


_DELIVERY_COLS = (
    "id, account_id, subscription_id, event_id, event, status, attempts, created_at_us,"
    " next_attempt_at_us, last_attempt_at_us, last_response_status, last_error"
)


def _maybe_time(us: int | None) -> datetime | None:
    return None if us is None else from_micros(us)


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        account_id=row[1],
        subscription_id=row[2],
        event_id=row[3],
        event=row[4],
        status=DeliveryStatus(row[5]),
        attempts=int(row[6]),
        created_at=from_micros(row[7]),
        next_attempt_at=_maybe_time(row[8]),
        last_attempt_at=_maybe_time(row[9]),
        last_response_status=row[10],
        last_error=row[11],
    )


class Deliveries:
    def __init__(self, db: Db) -> None:
        self._db = db

    def next_due(self) -> datetime | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at_us - (SELECT a.clock_offset_us FROM accounts a"
            " WHERE a.id = d.account_id)) FROM webhook_deliveries d WHERE d.status = ?",
            (DeliveryStatus.PENDING.value,),
        ).fetchone()
        return None if row is None or row[0] is None else from_micros(int(row[0]))

    def lease_due(self, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        rows = self._db.execute(
            "UPDATE webhook_deliveries SET leased_until_us = ? WHERE id IN ("  # noqa: S608
            " SELECT d.id FROM webhook_deliveries d WHERE d.status = ?"
            " AND d.next_attempt_at_us <= ? + (SELECT a.clock_offset_us FROM accounts a"
            "  WHERE a.id = d.account_id)"
            " AND (d.leased_until_us IS NULL OR d.leased_until_us <= ?)"
            f" ORDER BY d.next_attempt_at_us LIMIT ?{self._db.skip_locked})"
            f" RETURNING {_DELIVERY_COLS}",
            (micros(until), DeliveryStatus.PENDING.value, micros(now), micros(now), limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def get(self, account_id: str, delivery_id: str) -> Delivery | None:
        if not _storable(delivery_id):
            return None
        row = self._db.execute(
            f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries"  # noqa: S608
            " WHERE id = ? AND account_id = ?",
            (delivery_id, account_id),
        ).fetchone()
        return _delivery(row) if row else None

    def find(self, delivery_id: str) -> Delivery | None:
        if not _storable(delivery_id):
            return None
        row = self._db.execute(
            f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE id = ?",  # noqa: S608
            (delivery_id,),
        ).fetchone()
        return _delivery(row) if row else None

    def recent(self, account_id: str | None, limit: int) -> list[Delivery]:
        where = "" if account_id is None else " WHERE account_id = ?"
        params: tuple[Any, ...] = () if account_id is None else (account_id,)
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries{where}"  # noqa: S608
            " ORDER BY COALESCE(last_attempt_at_us, created_at_us) DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def payload(self, event_id: str) -> bytes | None:
        row = self._db.execute("SELECT payload FROM outbox WHERE id = ?", (event_id,)).fetchone()
        return bytes(row[0]) if row else None

    def finish(self, delivery_id: str, leased_until: datetime, outcome: AttemptOutcome) -> bool:
        row = self._db.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_attempt_at_us = ?,"
            " next_attempt_at_us = ?, last_response_status = ?, last_error = ?,"
            " leased_until_us = NULL WHERE id = ? AND leased_until_us = ? RETURNING id",
            (
                outcome.status.value,
                outcome.attempts,
                micros(outcome.at),
                None if outcome.next_attempt_at is None else micros(outcome.next_attempt_at),
                outcome.response_status,
                outcome.error,
                delivery_id,
                micros(leased_until),
            ),
        ).fetchone()
        return row is not None

    def replay(self, account_id: str, delivery_id: str, now: datetime) -> Delivery | None:
        row = self._db.execute(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at_us = ?,"  # noqa: S608
            " leased_until_us = NULL WHERE id = ? AND account_id = ?"
            f" RETURNING {_DELIVERY_COLS}",
            (DeliveryStatus.PENDING.value, micros(now), delivery_id, account_id),
        ).fetchone()
        return _delivery(row) if row else None

    def page(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None,
        subscription_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[Delivery]:
        where = ["d.account_id = ?"]
        params: list[Any] = [account_id]
        if status is not None:
            where.append("d.status = ?")
            params.append(status.value)
        if subscription_id is not None:
            where.append("d.subscription_id = ?")
            params.append(subscription_id)
        if after is not None:
            where.append(
                "EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.id = ? AND c.account_id = ?"
                " AND (d.created_at_us < c.created_at_us"
                "  OR (d.created_at_us = c.created_at_us AND d.id < c.id)))"
            )
            params += [after, account_id]
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries d"  # noqa: S608
            f" WHERE {' AND '.join(where)} ORDER BY d.created_at_us DESC, d.id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def failed_since(self, since: datetime) -> list[Delivery]:
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries"  # noqa: S608
            " WHERE status = ? AND last_attempt_at_us >= ? ORDER BY created_at_us, id",
            (DeliveryStatus.FAILED.value, micros(since)),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def prune(self, created_before: datetime) -> int:
        before = micros(created_before)
        gone = self._db.execute(
            "DELETE FROM webhook_deliveries WHERE status = ? AND created_at_us < ? RETURNING id",
            (DeliveryStatus.DELIVERED.value, before),
        ).fetchall()
        events = self._db.execute(
            "DELETE FROM outbox WHERE created_at_us < ? AND NOT EXISTS"
            " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = outbox.id) RETURNING id",
            (before,),
        ).fetchall()
        return len(gone) + len(events)


class Refunds:
    """Refunds and reversals: the record as a document, searched by payment intent and status."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, refund: Refund) -> None:
        self._db.execute(
            "INSERT INTO refunds (id, account_id, payment_intent_id, kind, status, request,"
            " created_at_us, doc) VALUES (?,?,?,?,?,?,?,?)",
            (
                refund.id,
                refund.account_id,
                refund.payment_intent_id,
                refund.kind.value,
                refund.status.value,
                refund.request,
                micros(refund.claimed_at),
                codec.encode(refund),
            ),
        )

    def get(self, account_id: str, refund_id: str) -> Refund | None:
        if not _storable(refund_id):
            return None
        row = self._db.execute(
            "SELECT doc FROM refunds WHERE id = ? AND account_id = ?", (refund_id, account_id)
        ).fetchone()
        return codec.decode_refund(row[0]) if row else None

    def pending(self, account_id: str, pi_id: str) -> list[Refund]:
        rows = self._db.execute(
            "SELECT doc FROM refunds WHERE payment_intent_id = ? AND account_id = ?"
            " AND status = ? ORDER BY created_at_us, id",
            (pi_id, account_id, RefundStatus.PENDING.value),
        ).fetchall()
        return [codec.decode_refund(row[0]) for row in rows]

    def by_request(self, account_id: str, pi_id: str, request: str) -> Refund | None:
        row = self._db.execute(
            "SELECT doc FROM refunds WHERE payment_intent_id = ? AND account_id = ?"
            " AND request = ? AND status <> ? ORDER BY created_at_us DESC, id DESC LIMIT 1",
            (pi_id, account_id, request, RefundStatus.FAILED.value),
        ).fetchone()
        return codec.decode_refund(row[0]) if row else None

    def update(self, refund: Refund, *, expected: RefundStatus) -> bool:
        row = self._db.execute(
            "UPDATE refunds SET status = ?, doc = ? WHERE id = ? AND account_id = ? AND status = ?"
            " RETURNING id",
            (
                refund.status.value,
                codec.encode(refund),
                refund.id,
                refund.account_id,
                expected.value,
            ),
        ).fetchone()
        return row is not None

    def lease_pending(
        self, due: Callable[[Refund], bool], now: datetime, until: datetime, limit: int
    ) -> list[Refund]:
        free = "status = ? AND (recovery_leased_until_us IS NULL OR recovery_leased_until_us <= ?)"
        candidates = [
            codec.decode_refund(row[0])
            for row in self._db.execute(
                f"SELECT doc FROM refunds WHERE {free} LIMIT ?{self._db.skip_locked}",  # noqa: S608
                (RefundStatus.PENDING.value, micros(now), limit),
            ).fetchall()
        ]
        leased = []
        for refund in candidates:
            if not due(refund):
                continue
            row = self._db.execute(
                f"UPDATE refunds SET recovery_leased_until_us = ? WHERE id = ? AND {free}"  # noqa: S608
                " RETURNING id",
                (micros(until), refund.id, RefundStatus.PENDING.value, micros(now)),
            ).fetchone()
            if row is not None:
                leased.append(refund)
        return leased


_AUDIT_COLS = "seq, id, at_us, actor, action, subject, account_id, outcome, count, detail"


def _audit_entry(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        id=row[1],
        at=from_micros(int(row[2])),
        actor=row[3],
        action=row[4],
        subject=row[5],
        account_id=row[6],
        outcome=row[7],
        count=int(row[8]),
        detail=json.loads(row[9]),
        seq=int(row[0]),
    )


class AuditLog:
    """The append-only audit table: INSERT and SELECT only (triggers refuse the rest)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def append(self, entry: AuditEntry) -> None:
        self._db.execute(
            "INSERT INTO audit_log (id, at_us, actor, action, subject, account_id, outcome,"
            " count, detail) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                entry.id,
                micros(entry.at),
                entry.actor,
                entry.action,
                entry.subject,
                entry.account_id,
                entry.outcome,
                entry.count,
                json.dumps(dict(entry.detail), sort_keys=True),
            ),
        )

    def recent(
        self, limit: int, *, after: int | None = None, account_id: str | None = None
    ) -> list[AuditEntry]:
        where, params = ["1 = 1"], list[Any]()
        if account_id is not None:
            where.append("account_id = ?")
            params.append(account_id)
        if after is not None:
            where.append("seq > ?")
            params.append(after)
        order = "ASC" if after is not None else "DESC"
        rows = self._db.execute(
            f"SELECT {_AUDIT_COLS} FROM audit_log WHERE {' AND '.join(where)}"  # noqa: S608
            f" ORDER BY seq {order} LIMIT ?",
            (*params, limit),
        ).fetchall()
        entries = [_audit_entry(row) for row in rows]
        return entries if after is not None else entries[::-1]


class CardAttempts:
    """Card attempts counted by the card-testing limits: a fingerprint, never card data."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def hold(self, account_id: str) -> None:
        self._db.execute(
            f"SELECT id FROM accounts WHERE id = ?{self._db.lock_wait}",  # noqa: S608
            (account_id,),
        )

    def add(self, attempt: CardAttempt) -> None:
        self._db.execute(
            "INSERT INTO card_attempts"
            " (id, account_id, setup_intent_id, fingerprint, outcome, at_us)"
            " VALUES (?,?,?,?,?,?)",
            (
                attempt.id,
                attempt.account_id,
                attempt.setup_intent_id,
                attempt.fingerprint,
                attempt.outcome.value,
                micros(attempt.at),
            ),
        )

    def settle(self, attempt_id: str, outcome: CardResult) -> None:
        self._db.execute(
            "UPDATE card_attempts SET outcome = ? WHERE id = ?", (outcome.value, attempt_id)
        )

    def delete(self, attempt_id: str) -> None:
        self._db.execute("DELETE FROM card_attempts WHERE id = ?", (attempt_id,))

    def nth_newest(
        self,
        account_id: str,
        setup_intent_id: str | None,
        outcomes: tuple[CardResult, ...],
        since: datetime,
        n: int,
    ) -> datetime | None:
        scope, value = (
            ("account_id", account_id)
            if setup_intent_id is None
            else ("setup_intent_id", setup_intent_id)
        )
        marks = ",".join("?" * len(outcomes))
        row = self._db.execute(
            f"SELECT at_us FROM card_attempts WHERE {scope} = ?"  # noqa: S608
            f" AND at_us > ? AND outcome IN ({marks})"
            " ORDER BY at_us DESC LIMIT 1 OFFSET ?",
            (value, micros(since), *(o.value for o in outcomes), n - 1),
        ).fetchone()
        return None if row is None else from_micros(row[0])

    def cards(self, setup_intent_id: str, since: datetime) -> dict[str, datetime]:
        rows = self._db.execute(
            "SELECT fingerprint, MAX(at_us) FROM card_attempts"
            " WHERE setup_intent_id = ? AND at_us > ? GROUP BY fingerprint",
            (setup_intent_id, micros(since)),
        ).fetchall()
        return {row[0]: from_micros(row[1]) for row in rows}

    def prune(self, before: datetime) -> int:
        rows = self._db.execute(
            "DELETE FROM card_attempts WHERE at_us < ? RETURNING id", (micros(before),)
        ).fetchall()
        return len(rows)


class Retention:
    """The retention purge's reads: final intents and vault rows in batches by id (keyset)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def _final(self, table: str, statuses: frozenset[Any], after: str, limit: int) -> list[Any]:
        marks = ",".join("?" * len(statuses))
        return self._db.execute(
            f"SELECT doc FROM {table} WHERE status IN ({marks}) AND id > ?"  # noqa: S608
            f" ORDER BY id LIMIT ?{self._db.skip_locked}",
            (*sorted(s.value for s in statuses), after, limit),
        ).fetchall()

    def final_setup_intents(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[SetupIntent]:
        rows = self._final("setup_intents", statuses, after, limit)
        return [codec.decode_si(row[0]) for row in rows]

    def final_payment_intents(
        self, statuses: frozenset[PIStatus], after: str, limit: int
    ) -> list[PaymentIntent]:
        rows = self._final("payment_intents", statuses, after, limit)
        return [codec.decode_pi(row[0]) for row in rows]

    def vault_tokens(self, after: str, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT token FROM vault_cards WHERE token > ? ORDER BY token LIMIT ?", (after, limit)
        ).fetchall()
        return [row[0] for row in rows]

    def vault_tokens_held(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[tuple[str, str | None]]:
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT id, doc FROM setup_intents WHERE status IN ({marks}) AND id > ?"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (*sorted(s.value for s in statuses), after, limit),
        ).fetchall()
        return [(row[0], codec.decode_si(row[1]).vault_token) for row in rows]


class KeyChecks:
    def __init__(self, db: Db) -> None:
        self._db = db

    def digest(self, name: str) -> str | None:
        row = self._db.execute("SELECT digest FROM key_checks WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def record(self, name: str, digest: str) -> None:
        self._db.execute(
            "INSERT INTO key_checks (name, digest) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, digest),
        )
