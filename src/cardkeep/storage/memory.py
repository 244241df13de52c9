"""An in-memory ``Storage`` for unit tests: a fake with the real semantics, not a mock.

Write transactions are serialised by one lock (like SQLite's BEGIN IMMEDIATE) and work on a copy
of the tables that replaces the original only on commit, so a rolled-back change leaves nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cardkeep.domain.account import Account, ApiKey
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
    StoredResponse,
    StoredSubscription,
)

# token, account id, key id, nonce, ciphertext, created at: opaque to storage.
VaultRow = tuple[str, str, str, bytes, bytes, datetime]
# id, account id, KEK id, wrapped key, status, created at: opaque to storage.
DekRow = tuple[str, str, str, bytes, str, datetime]
_CURRENT, _PREVIOUS, _RETIRED = "current", "previous", "retired"
# idempotency key, result, message, auth code, network transaction id, created at, amount (minor
# units), capture key (what a refund or reversal returns money from), kind (charge/refund/reversal)
LedgerRow = tuple[
    str, str, str, str | None, str | None, datetime, int | None, str | None, str | None
]


@dataclass
class _Tables:
    accounts: dict[str, Account] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)  # key hash -> key
    setup_intents: dict[str, SetupIntent] = field(default_factory=dict)
    payment_intents: dict[str, PaymentIntent] = field(default_factory=dict)
    vault: dict[str, VaultRow] = field(default_factory=dict)
    sandbox_ledger: dict[str, LedgerRow] = field(default_factory=dict)
    leases: dict[str, datetime] = field(default_factory=dict)  # "sweep:<acc>", "recover:<pi>"
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    outbox: list[DomainEvent] = field(default_factory=list)
    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)
    # delivery id -> (delivery, real-time lease end or None)
    deliveries: dict[str, tuple[Delivery, datetime | None]] = field(default_factory=dict)
    origins: dict[str, tuple[str, ...]] = field(default_factory=dict)  # account id -> origins
    refunds: dict[str, Refund] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)  # in append order; seq = index + 1
    card_attempts: dict[str, CardAttempt] = field(default_factory=dict)
    deks: dict[str, DekRow] = field(default_factory=dict)
    key_checks: dict[str, str] = field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(
            dict(self.accounts),
            dict(self.keys),
            dict(self.setup_intents),
            dict(self.payment_intents),
            dict(self.vault),
            dict(self.sandbox_ledger),
            dict(self.leases),
            dict(self.idempotency),
            list(self.outbox),
            dict(self.subscriptions),
            dict(self.deliveries),
            dict(self.origins),
            dict(self.refunds),
            list(self.audit),
            dict(self.card_attempts),
            dict(self.deks),
            dict(self.key_checks),
        )


class MemoryStorage:
    def __init__(self) -> None:
        self.tables = _Tables()
        self._write_lock = threading.Lock()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[MemoryUnitOfWork]:
        if not write:
            yield MemoryUnitOfWork(self.tables.copy(), on_commit=None)
            return
        with self._write_lock:
            uow = MemoryUnitOfWork(self.tables.copy(), on_commit=self._replace)
            yield uow

    def _replace(self, tables: _Tables) -> None:
        self.tables = tables

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryUnitOfWork:
    def __init__(self, tables: _Tables, on_commit: object) -> None:
        self._t = tables
        self._on_commit = on_commit
        self.accounts = _Accounts(tables)
        self.setup_intents = _SetupIntents(tables)
        self.payment_intents = _PaymentIntents(tables)
        self.vault = _Vault(tables)
        self.sandbox_ledger = _SandboxLedger(tables)
        self.idempotency = _Idempotency(tables)
        self.outbox = _Outbox(tables)
        self.webhooks = _WebhookSubscriptions(tables)
        self.deliveries = _Deliveries(tables)
        self.refunds = _Refunds(tables)
        self.audit = _AuditLog(tables)
        self.card_attempts = _CardAttempts(tables)
        self.retention = _Retention(tables)
        self.key_checks = _KeyChecks(tables)

    def commit(self) -> None:
        if callable(self._on_commit):
            self._on_commit(self._t)


def _take(leases: dict[str, datetime], item: str, now: datetime, until: datetime) -> bool:
    """Lease ``item`` until ``until`` if its lease has expired at ``now``."""
    held = leases.get(item)
    if held is not None and held > now:
        return False
    leases[item] = until
    return True


class _Accounts:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def add(self, account: Account) -> None:
        if account.id in self._t.accounts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.accounts[account.id] = account

    def get(self, account_id: str) -> Account | None:
        return self._t.accounts.get(account_id)

    def lease_for_sweep(self, now: datetime, until: datetime, limit: int) -> list[Account]:
        leased: list[Account] = []
        for account in self.list():
            if len(leased) == limit:
                break
            if _take(self._t.leases, f"sweep:{account.id}", now, until):
                leased.append(account)
        return leased

    def list(self) -> list[Account]:
        return sorted(self._t.accounts.values(), key=lambda a: a.created_at)

    def add_key(self, key_id: str, key_hash: str, account_id: str, created_at: datetime) -> None:
        taken = key_hash in self._t.keys or self.key(key_id) is not None
        if taken or account_id not in self._t.accounts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.keys[key_hash] = ApiKey(key_id, account_id, created_at)

    def by_key_hash(self, key_hash: str) -> tuple[str, Account] | None:
        key = self._t.keys.get(key_hash)
        if key is None or not key.active:
            return None
        return key_hash, self._t.accounts[key.account_id]

    def keys(self, account_id: str) -> tuple[ApiKey, ...]:
        mine = [k for k in self._t.keys.values() if k.account_id == account_id]
        return tuple(sorted(mine, key=lambda k: (k.created_at, k.id)))

    def key(self, key_id: str) -> ApiKey | None:
        return next((k for k in self._t.keys.values() if k.id == key_id), None)

    def key_of_hash(self, key_hash: str) -> ApiKey | None:
        return self._t.keys.get(key_hash)

    def revoke_key(self, key_id: str, revoked_at: datetime) -> None:
        for key_hash, key in self._t.keys.items():
            if key.id == key_id and key.active:
                self._t.keys[key_hash] = replace(key, revoked_at=revoked_at)

    def origins(self, account_id: str) -> tuple[str, ...]:
        return self._t.origins.get(account_id, ())

    def set_origins(self, account_id: str, origins: tuple[str, ...]) -> None:
        if account_id in self._t.accounts:
            self._t.origins[account_id] = origins

    def set_clock_offset(self, account_id: str, offset_us: int) -> None:
        a = self._t.accounts[account_id]
        if offset_us >= a.clock_offset_us:
            self._t.accounts[account_id] = Account(a.id, a.name, a.mode, a.created_at, offset_us)


class _SetupIntents:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def add(self, si: SetupIntent) -> None:
        if si.id in self._t.setup_intents or si.account_id not in self._t.accounts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.setup_intents[si.id] = si

    def get(self, account_id: str, si_id: str) -> SetupIntent | None:
        si = self._t.setup_intents.get(si_id)
        return si if si is not None and si.account_id == account_id else None

    def find(self, si_id: str) -> SetupIntent | None:
        return self._t.setup_intents.get(si_id)

    def update(self, si: SetupIntent, *, expected: SIStatus) -> bool:
        current = self.get(si.account_id, si.id)
        if current is None or current.status is not expected:
            return False
        self._t.setup_intents[si.id] = si
        return True

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        out = [
            si.id
            for si in self._t.setup_intents.values()
            if si.account_id == account_id
            and (
                (si.status is SIStatus.CREATED and si.expire_at <= now)
                or (
                    si.status is SIStatus.AUTHORIZED
                    and si.card is not None
                    and si.card.expiry.ends_at <= now
                )
            )
        ]
        return out[:limit]


class _PaymentIntents:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def add(self, pi: PaymentIntent) -> None:
        if pi.id in self._t.payment_intents or pi.account_id not in self._t.accounts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.payment_intents[pi.id] = pi

    def get(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        pi = self._t.payment_intents.get(pi_id)
        return pi if pi is not None and pi.account_id == account_id else None

    def get_for_claim(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        return self.get(account_id, pi_id)  # write transactions are serialised by one lock

    def get_for_update(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        return self.get(account_id, pi_id)

    def update(self, pi: PaymentIntent, *, expected: PIStatus) -> bool:
        current = self.get(pi.account_id, pi.id)
        if current is None or current.status is not expected:
            return False
        self._t.payment_intents[pi.id] = pi
        return True

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        out = [
            pi.id
            for pi in self._t.payment_intents.values()
            if pi.account_id == account_id and pi.status is PIStatus.CREATED and pi.expire_at <= now
        ]
        return out[:limit]

    def lease_stuck_charges(
        self,
        due: Callable[[PaymentIntent], bool],
        now: datetime,
        until: datetime,
        limit: int,
    ) -> list[PaymentIntent]:
        leased: list[PaymentIntent] = []
        for pi in self._t.payment_intents.values():
            if len(leased) == limit:
                break
            if pi.status is not PIStatus.CHARGING:
                continue
            if not due(pi):
                continue
            if _take(self._t.leases, f"recover:{pi.id}", now, until):
                leased.append(pi)
        return leased


class _Vault:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def holds(self, token: str) -> bool:
        return token in self._t.vault

    def forget(self, token: str) -> None:
        self._t.vault.pop(token, None)

    def put(self, row: VaultRow) -> None:
        token, account_id = row[0], row[1]
        if token in self._t.vault or account_id not in self._t.accounts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.vault[token] = row

    def get(self, token: str) -> VaultRow | None:
        return self._t.vault.get(token)

    def key_ids(self) -> set[str]:
        return {row[2] for row in self._t.vault.values()}

    def card_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._t.vault.values():
            counts[row[2]] = counts.get(row[2], 0) + 1
        return counts

    def cards_not_under(
        self, account_id: str, key_id: str, after: str, limit: int
    ) -> list[VaultRow]:
        rows = sorted(
            row
            for row in self._t.vault.values()
            if row[1] == account_id and row[2] != key_id and row[0] > after
        )
        return rows[:limit]

    def reseal(self, token: str, old_key_id: str, row: VaultRow) -> bool:
        held = self._t.vault.get(token)
        if held is None or held[2] != old_key_id:
            return False
        self._t.vault[token] = (token, held[1], row[2], row[3], row[4], held[5])
        return True

    def kek_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._t.deks.values():
            counts[row[2]] = counts.get(row[2], 0) + 1
        return counts

    def dek_add(self, row: DekRow) -> None:
        dek_id, account_id, status = row[0], row[1], row[4]
        clash = status == _CURRENT and self.dek_current(account_id, lock=False) is not None
        if dek_id in self._t.deks or account_id not in self._t.accounts or clash:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.deks[dek_id] = row

    def dek_get(self, dek_id: str) -> DekRow | None:
        return self._t.deks.get(dek_id)

    def dek_current(self, account_id: str, *, lock: bool) -> DekRow | None:
        for row in self._t.deks.values():
            if row[1] == account_id and row[4] == _CURRENT:
                return row
        return None

    def dek_replace_current(self, account_id: str, row: DekRow) -> None:
        for dek_id, held in list(self._t.deks.items()):
            if held[1] == account_id and held[4] == _CURRENT:
                self._t.deks[dek_id] = (*held[:4], _PREVIOUS, held[5])
        self.dek_add(row)

    def deks(self, after: str, limit: int) -> list[DekRow]:
        return sorted(row for row in self._t.deks.values() if row[0] > after)[:limit]

    def deks_not_under(self, kek_id: str, after: str, limit: int) -> list[DekRow]:
        rows = (row for row in self._t.deks.values() if row[2] != kek_id and row[0] > after)
        return sorted(rows)[:limit]

    def dek_rewrap(self, dek_id: str, old_kek_id: str, kek_id: str, wrapped: bytes) -> bool:
        held = self._t.deks.get(dek_id)
        if held is None or held[2] != old_kek_id:
            return False
        self._t.deks[dek_id] = (held[0], held[1], kek_id, wrapped, held[4], held[5])
        return True

    def _used(self, dek_id: str) -> bool:
        return any(row[2] == dek_id for row in self._t.vault.values())

    def dek_retire_unused(self, account_id: str) -> list[str]:
        retired = []
        for dek_id, held in list(self._t.deks.items()):
            if held[1] == account_id and held[4] == _PREVIOUS and not self._used(dek_id):
                self._t.deks[dek_id] = (*held[:4], _RETIRED, held[5])
                retired.append(dek_id)
        return sorted(retired)

    def dek_delete_unused(self, dek_id: str) -> bool:
        held = self._t.deks.get(dek_id)
        if held is None or held[4] == _CURRENT or self._used(dek_id):
            return False
        del self._t.deks[dek_id]
        return True

    def dek_accounts(self, after: str, limit: int) -> list[str]:
        ids = {row[1] for row in self._t.deks.values()} | {r[1] for r in self._t.vault.values()}
        return sorted(i for i in ids if i > after)[:limit]


class _SandboxLedger:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def first(self, row: LedgerRow) -> LedgerRow:
        return self._t.sandbox_ledger.setdefault(row[0], row)

    def get(self, key: str) -> LedgerRow | None:
        return self._t.sandbox_ledger.get(key)

    def hold(self, key: str) -> None:
        """Nothing to lock: write transactions are serialised by one lock."""

    def refunded(self, capture_key: str, kinds: tuple[str, ...], result: str) -> int:
        return sum(
            row[6] or 0
            for row in self._t.sandbox_ledger.values()
            if row[7] == capture_key and row[1] == result and row[8] in kinds
        )


class _Idempotency:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def claim(
        self, scope: str, key: str, fingerprint: str, now: datetime, lease_until: datetime
    ) -> bool:
        if (scope, key) in self._t.idempotency:
            return False
        self._t.idempotency[scope, key] = IdempotencyRecord(
            fingerprint, False, lease_until, now, None
        )
        return True

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        return self._t.idempotency.get((scope, key))

    def take_over(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        lease_until: datetime,
        expired_before: datetime,
    ) -> bool:
        found = self._t.idempotency.get((scope, key))
        if found is None:
            return False
        lapsed = (
            not found.done
            and found.fingerprint == fingerprint
            and found.leased_until is not None
            and found.leased_until <= now
        )
        if not lapsed and found.created_at > expired_before:
            return False
        self._t.idempotency[scope, key] = IdempotencyRecord(
            fingerprint, False, lease_until, now, None
        )
        return True

    def complete(self, scope: str, key: str, fingerprint: str, response: StoredResponse) -> bool:
        found = self._t.idempotency.get((scope, key))
        if found is None or found.fingerprint != fingerprint or found.done:
            return False
        self._t.idempotency[scope, key] = replace(
            found, done=True, leased_until=None, response=response
        )
        return True

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        found = self._t.idempotency.get((scope, key))
        if found is not None and found.fingerprint == fingerprint and not found.done:
            del self._t.idempotency[scope, key]

    def prune(self, created_before: datetime) -> int:
        old = [k for k, r in self._t.idempotency.items() if r.created_at < created_before]
        for k in old:
            del self._t.idempotency[k]
        return len(old)


class _Outbox:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def record(self, event: DomainEvent) -> None:
        self._t.outbox.append(event)
        for sub in self._t.subscriptions.values():
            if sub.account_id == event.account_id and event.event in sub.events:
                delivery = Delivery(
                    id=f"whd_{event.id[4:]}_{sub.id[3:]}",
                    account_id=sub.account_id,
                    subscription_id=sub.id,
                    event_id=event.id,
                    event=event.event,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    created_at=event.created_at,
                    next_attempt_at=event.created_at,
                )
                self._t.deliveries[delivery.id] = (delivery, None)


class _WebhookSubscriptions:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def _check_url(self, sub: StoredSubscription) -> None:
        for other in self._t.subscriptions.values():
            same = other.account_id == sub.account_id and other.url == sub.url
            if same and other.id != sub.id:
                raise Conflict("A subscription to this URL exists already.")

    def add(self, sub: StoredSubscription) -> None:
        self._check_url(sub)
        self._t.subscriptions[sub.id] = sub

    def list(self, account_id: str) -> list[StoredSubscription]:
        mine = [s for s in self._t.subscriptions.values() if s.account_id == account_id]
        return sorted(mine, key=lambda s: (s.created_at, s.id))

    def get(self, account_id: str, sub_id: str) -> StoredSubscription | None:
        found = self._t.subscriptions.get(sub_id)
        return found if found is not None and found.account_id == account_id else None

    def find(self, sub_id: str) -> StoredSubscription | None:
        return self._t.subscriptions.get(sub_id)

    def save(self, sub: StoredSubscription) -> None:
        self._check_url(sub)
        if sub.id in self._t.subscriptions:
            self._t.subscriptions[sub.id] = sub

    def delete(self, account_id: str, sub_id: str) -> bool:
        if self.get(account_id, sub_id) is None:
            return False
        del self._t.subscriptions[sub_id]
        for key, (d, _) in list(self._t.deliveries.items()):
            if d.subscription_id == sub_id and d.status is DeliveryStatus.PENDING:
                del self._t.deliveries[key]
        return True


class _Deliveries:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def next_due(self) -> datetime | None:
        due = [
            d.next_attempt_at
            - timedelta(microseconds=self._t.accounts[d.account_id].clock_offset_us)
            for d, _ in self._t.deliveries.values()
            if d.status is DeliveryStatus.PENDING and d.next_attempt_at is not None
        ]
        return min(due, default=None)

    def lease_due(self, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        due = []
        for d, lease in self._t.deliveries.values():
            account = self._t.accounts[d.account_id]
            if (
                d.status is DeliveryStatus.PENDING
                and d.next_attempt_at is not None
                and d.next_attempt_at <= account.now(now)
                and (lease is None or lease <= now)
            ):
                due.append(d)
        due.sort(key=lambda d: (d.next_attempt_at, d.id))
        for d in due[:limit]:
            self._t.deliveries[d.id] = (d, until)
        return due[:limit]

    def get(self, account_id: str, delivery_id: str) -> Delivery | None:
        found = self._t.deliveries.get(delivery_id)
        return found[0] if found is not None and found[0].account_id == account_id else None

    def find(self, delivery_id: str) -> Delivery | None:
        found = self._t.deliveries.get(delivery_id)
        return None if found is None else found[0]

    def recent(self, account_id: str | None, limit: int) -> list[Delivery]:
        rows = [
            d
            for d, _ in self._t.deliveries.values()
            if account_id is None or d.account_id == account_id
        ]
        rows.sort(key=lambda d: (d.last_attempt_at or d.created_at, d.id), reverse=True)
        return rows[:limit]

    def payload(self, event_id: str) -> bytes | None:
        return next((e.payload() for e in self._t.outbox if e.id == event_id), None)

    def finish(self, delivery_id: str, leased_until: datetime, outcome: AttemptOutcome) -> bool:
        found = self._t.deliveries.get(delivery_id)
        if found is None or found[1] != leased_until:
            return False
        self._t.deliveries[delivery_id] = (found[0].recorded(outcome), None)
        return True

    def replay(self, account_id: str, delivery_id: str, now: datetime) -> Delivery | None:
        found = self.get(account_id, delivery_id)
        if found is None:
            return None
        again = found.replayed(now)
        self._t.deliveries[delivery_id] = (again, None)
        return again

    def page(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None,
        subscription_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[Delivery]:
        rows = sorted(
            (d for d, _ in self._t.deliveries.values() if d.account_id == account_id),
            key=lambda d: (d.created_at, d.id),
            reverse=True,
        )
        if after is not None:
            cursor = self.get(account_id, after)
            if cursor is None:
                return []
            rows = [d for d in rows if (d.created_at, d.id) < (cursor.created_at, cursor.id)]
        rows = [
            d
            for d in rows
            if (status is None or d.status is status)
            and (subscription_id is None or d.subscription_id == subscription_id)
        ]
        return rows[:limit]

    def failed_since(self, since: datetime) -> list[Delivery]:
        rows = [
            d
            for d, _ in self._t.deliveries.values()
            if d.status is DeliveryStatus.FAILED
            and d.last_attempt_at is not None
            and d.last_attempt_at >= since
        ]
        return sorted(rows, key=lambda d: (d.created_at, d.id))

    def prune(self, created_before: datetime) -> int:
        gone = [
            key
            for key, (d, _) in self._t.deliveries.items()
            if d.status is DeliveryStatus.DELIVERED and d.created_at < created_before
        ]
        for key in gone:
            del self._t.deliveries[key]
        referenced = {d.event_id for d, _ in self._t.deliveries.values()}
        kept = [e for e in self._t.outbox if e.created_at >= created_before or e.id in referenced]
        pruned = len(gone) + len(self._t.outbox) - len(kept)
        self._t.outbox = kept
        return pruned


class _Refunds:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def add(self, refund: Refund) -> None:
        if refund.id in self._t.refunds or refund.payment_intent_id not in self._t.payment_intents:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.refunds[refund.id] = refund

    def get(self, account_id: str, refund_id: str) -> Refund | None:
        refund = self._t.refunds.get(refund_id)
        return refund if refund is not None and refund.account_id == account_id else None

    def _of(self, account_id: str, pi_id: str) -> list[Refund]:
        found = [
            r
            for r in self._t.refunds.values()
            if r.account_id == account_id and r.payment_intent_id == pi_id
        ]
        return sorted(found, key=lambda r: (r.claimed_at, r.id))

    def pending(self, account_id: str, pi_id: str) -> list[Refund]:
        return [r for r in self._of(account_id, pi_id) if r.status is RefundStatus.PENDING]

    def by_request(self, account_id: str, pi_id: str, request: str) -> Refund | None:
        mine = [
            r
            for r in self._of(account_id, pi_id)
            if r.request == request and r.status is not RefundStatus.FAILED
        ]
        return mine[-1] if mine else None

    def update(self, refund: Refund, *, expected: RefundStatus) -> bool:
        current = self.get(refund.account_id, refund.id)
        if current is None or current.status is not expected:
            return False
        self._t.refunds[refund.id] = refund
        return True

    def lease_pending(
        self, due: Callable[[Refund], bool], now: datetime, until: datetime, limit: int
    ) -> list[Refund]:
        out: list[Refund] = []
        for refund in list(self._t.refunds.values()):
            if len(out) >= limit:
                break
            pending = refund.status is RefundStatus.PENDING
            if pending and due(refund) and _take(self._t.leases, f"refund:{refund.id}", now, until):
                out.append(refund)
        return out


class _AuditLog:
    """Append-only, like the SQL table: nothing here changes or removes an entry."""

    def __init__(self, t: _Tables) -> None:
        self._t = t

    def append(self, entry: AuditEntry) -> None:
        if any(e.id == entry.id for e in self._t.audit):
            raise Conflict(f"audit entry {entry.id} exists")
        self._t.audit.append(replace(entry, seq=len(self._t.audit) + 1))

    def recent(
        self, limit: int, *, after: int | None = None, account_id: str | None = None
    ) -> list[AuditEntry]:
        found = [e for e in self._t.audit if account_id is None or e.account_id == account_id]
        if after is not None:
            return [e for e in found if e.seq is not None and e.seq > after][:limit]
        return found[-limit:] if limit > 0 else []


class _CardAttempts:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def hold(self, account_id: str) -> None:
        return None  # write transactions are serialised by the storage's lock

    def add(self, attempt: CardAttempt) -> None:
        if attempt.id in self._t.card_attempts:
            raise Conflict("The change conflicts with a record already stored.")
        self._t.card_attempts[attempt.id] = attempt

    def settle(self, attempt_id: str, outcome: CardResult) -> None:
        found = self._t.card_attempts.get(attempt_id)
        if found is not None:
            self._t.card_attempts[attempt_id] = replace(found, outcome=outcome)

    def delete(self, attempt_id: str) -> None:
        self._t.card_attempts.pop(attempt_id, None)

    def nth_newest(
        self,
        account_id: str,
        setup_intent_id: str | None,
        outcomes: tuple[CardResult, ...],
        since: datetime,
        n: int,
    ) -> datetime | None:
        times = sorted(
            (
                a.at
                for a in self._t.card_attempts.values()
                if a.at > since
                and a.outcome in outcomes
                and (
                    a.account_id == account_id
                    if setup_intent_id is None
                    else a.setup_intent_id == setup_intent_id
                )
            ),
            reverse=True,
        )
        return times[n - 1] if len(times) >= n else None

    def cards(self, setup_intent_id: str, since: datetime) -> dict[str, datetime]:
        newest: dict[str, datetime] = {}
        for a in self._t.card_attempts.values():
            if a.setup_intent_id == setup_intent_id and a.at > since:
                newest[a.fingerprint] = max(a.at, newest.get(a.fingerprint, a.at))
        return newest

    def prune(self, before: datetime) -> int:
        old = [k for k, a in self._t.card_attempts.items() if a.at < before]
        for k in old:
            del self._t.card_attempts[k]
        return len(old)


class _Retention:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def final_setup_intents(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[SetupIntent]:
        found = [si for si in self._t.setup_intents.values() if si.status in statuses]
        return sorted((si for si in found if si.id > after), key=lambda si: si.id)[:limit]

    def final_payment_intents(
        self, statuses: frozenset[PIStatus], after: str, limit: int
    ) -> list[PaymentIntent]:
        found = [pi for pi in self._t.payment_intents.values() if pi.status in statuses]
        return sorted((pi for pi in found if pi.id > after), key=lambda pi: pi.id)[:limit]

    def vault_tokens(self, after: str, limit: int) -> list[str]:
        return sorted(token for token in self._t.vault if token > after)[:limit]

    def vault_tokens_held(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[tuple[str, str | None]]:
        found = [si for si in self._t.setup_intents.values() if si.status in statuses]
        held = sorted((si for si in found if si.id > after), key=lambda si: si.id)[:limit]
        return [(si.id, si.vault_token) for si in held]


class _KeyChecks:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def digest(self, name: str) -> str | None:
        return self._t.key_checks.get(name)

    def record(self, name: str, digest: str) -> None:
        self._t.key_checks.setdefault(name, digest)
