"""The service layer's ports: what storage, the clock and the charger must provide.

Storage adapters (SQLite, memory, later PostgreSQL) implement ``Storage``; the cardholder-data side
implements ``Charger``. Nothing here knows SQL, HTTP, ciphertext or plaintext card numbers: cards
are vault tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from cardkeep.domain.account import Account, ApiKey, Mode
from cardkeep.domain.audit import AuditEntry
from cardkeep.domain.card import Expiry
from cardkeep.domain.events import DomainEvent
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.payment_intent import Status as PIStatus
from cardkeep.domain.refund import Refund
from cardkeep.domain.refund import Status as RefundStatus
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.setup_intent import Status as SIStatus
from cardkeep.domain.webhooks import AttemptOutcome, Delivery, DeliveryStatus


class Clock(Protocol):
    def now(self) -> datetime:
        """Real UTC time; accounts add their own offset."""
        ...


class AccountRepo(Protocol):
    def add(self, account: Account) -> None: ...
    def get(self, account_id: str) -> Account | None: ...
    def lease_for_sweep(self, now: datetime, until: datetime, limit: int) -> list[Account]:
        """Accounts whose sweep lease has expired at ``now`` (real time), leased to the caller
        until ``until``: each is swept by one worker per lease."""
        ...

    def list(self) -> list[Account]: ...
    def add_key(self, key_id: str, key_hash: str, account_id: str, created_at: datetime) -> None:
        """Store a key: its public id and the hash of its secret (never the secret)."""
        ...

    def by_key_hash(self, key_hash: str) -> tuple[str, Account] | None:
        """The stored hash and its account, for an active (not revoked) key."""
        ...

    def keys(self, account_id: str) -> tuple[ApiKey, ...]:
        """The account's keys, revoked ones included, oldest first."""
        ...

    def key(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""
        ...

    def key_of_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose secret has this hash, revoked or not."""
        ...

    def revoke_key(self, key_id: str, revoked_at: datetime) -> None:
        """Mark the key revoked at ``revoked_at``; a key revoked already keeps its first time."""
        ...

    def set_clock_offset(self, account_id: str, offset_us: int) -> None: ...
    def origins(self, account_id: str) -> tuple[str, ...]: ...
    def set_origins(self, account_id: str, origins: tuple[str, ...]) -> None: ...


class SetupIntentRepo(Protocol):
    def add(self, si: SetupIntent) -> None: ...
    def get(self, account_id: str, si_id: str) -> SetupIntent | None: ...
    def find(self, si_id: str) -> SetupIntent | None:
        """By id alone: only for the client-session-secret endpoints, which check the secret."""
        ...

    def update(self, si: SetupIntent, *, expected: SIStatus) -> bool:
        """Write ``si`` only if the stored status is still ``expected``; False if it moved."""
        ...

    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        """Ids of Created intents past expireAt and Authorized ones whose card has expired."""
        ...


class PaymentIntentRepo(Protocol):
    def add(self, pi: PaymentIntent) -> None: ...
    def get(self, account_id: str, pi_id: str) -> PaymentIntent | None: ...
    def get_for_claim(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        """Read and lock it for this transaction; raise ``RowLocked`` at once if another
        transaction holds it (SQLite's write transactions are serialised: nothing to lock)."""
        ...

    def update(self, pi: PaymentIntent, *, expected: PIStatus) -> bool: ...
    def due(self, account_id: str, now: datetime, limit: int) -> list[str]:
        """Ids of Created payment intents past expireAt."""
        ...

    def lease_stuck_charges(
        self,
        due: Callable[[PaymentIntent], bool],
        now: datetime,
        until: datetime,
        limit: int,
    ) -> list[PaymentIntent]:
        """Payment intents claimed for a charge and not settled, ``due`` for recovery, whose
        recovery lease has expired at ``now``, leased to the caller until ``until`` (real time):
        each is re-sent by one worker per lease."""
        ...

    def get_for_update(self, account_id: str, pi_id: str) -> PaymentIntent | None:
        """Read and lock it for this transaction, waiting for another transaction that holds
        it (refund and reversal claims queue on their payment intent; SQLite's write
        transactions are serialised already)."""
        ...


class RefundRepo(Protocol):
    """Refunds and reversals (``domain.refund.Refund``), each written conditionally on its
    status."""

    def add(self, refund: Refund) -> None: ...
    def get(self, account_id: str, refund_id: str) -> Refund | None: ...
    def pending(self, account_id: str, pi_id: str) -> list[Refund]:
        """The payment intent's Pending refunds and reversals, oldest first."""
        ...

    def by_request(self, account_id: str, pi_id: str, request: str) -> Refund | None:
        """The newest refund or reversal of the payment intent that the request named by
        ``request`` (a token of its idempotency key) claimed, Failed ones left out (a retry of a
        failed refund makes a new one)."""
        ...

    def update(self, refund: Refund, *, expected: RefundStatus) -> bool:
        """Write ``refund`` only if the stored status is still ``expected``."""
        ...

    def lease_pending(
        self, due: Callable[[Refund], bool], now: datetime, until: datetime, limit: int
    ) -> list[Refund]:
        """Pending refunds and reversals ``due`` for recovery whose recovery lease has expired
        at ``now``, leased to the caller until ``until`` (real time): each is re-sent by one
        worker per lease."""
        ...


class CardVault(Protocol):
    """The vault as the service sees it: tokens only. Sealing, storing and opening a card belong
    to ``cde/``; the service checks that a card is on file and forgets it when its setup intent
    ends, in the same transaction as that change."""

    def holds(self, token: str) -> bool: ...
    def forget(self, token: str) -> None: ...


class CardResult(StrEnum):
    """What became of a card attempt (card-testing defence): ``pending`` while the acquirer is
    asked, then ``approved``, ``declined`` (by the acquirer) or ``expired`` (past its month)."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CardAttempt:
    """One card entry, counted by the card-testing limits: the account, the setup intent when it
    came through a client session secret (None: an account key), the card's keyed fingerprint
    (never the card number), the outcome and when it was made (real time)."""

    id: str
    account_id: str
    setup_intent_id: str | None
    fingerprint: str
    outcome: CardResult
    at: datetime


class KeyCheckRepo(Protocol):
    def digest(self, name: str) -> str | None: ...

    def record(self, name: str, digest: str) -> None:
        """Keep ``digest`` for ``name`` unless one is kept already (the first writer wins)."""
        ...


class CardAttemptRepo(Protocol):
    def hold(self, account_id: str) -> None:
        """Lock the account until the transaction ends, so the card attempts of one account are
        counted and added one transaction after the other (PostgreSQL: its row, waiting)."""
        ...

    def add(self, attempt: CardAttempt) -> None: ...

    def settle(self, attempt_id: str, outcome: CardResult) -> None: ...

    def delete(self, attempt_id: str) -> None: ...

    def nth_newest(
        self,
        account_id: str,
        setup_intent_id: str | None,
        outcomes: tuple[CardResult, ...],
        since: datetime,
        n: int,
    ) -> datetime | None:
        """When the ``n``-th newest (1 = the newest) attempt with one of these outcomes, made
        after ``since``, was made; None when there are fewer than ``n``. Of the account's
        attempts, or of the setup intent's when ``setup_intent_id`` is given."""
        ...

    def cards(self, setup_intent_id: str, since: datetime) -> dict[str, datetime]:
        """The setup intent's distinct card fingerprints tried after ``since``, each with
        its newest attempt."""
        ...

    def prune(self, before: datetime) -> int:
        """Delete the attempts made before ``before``; how many."""
        ...


class RetentionRepo(Protocol):
    """What the retention purge reads, in batches by id. Inside a write transaction the intents
    returned are locked until it ends (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so a row another
    transaction is changing is left for the next run; SQLite's write transactions are serialised),
    so a purge written with ``update`` in the same transaction never overwrites a newer change."""

    def final_setup_intents(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[SetupIntent]:
        """Setup intents in one of ``statuses`` with an id after ``after``, by id."""
        ...

    def final_payment_intents(
        self, statuses: frozenset[PIStatus], after: str, limit: int
    ) -> list[PaymentIntent]:
        """Payment intents in one of ``statuses`` with an id after ``after``, by id."""
        ...

    def vault_tokens(self, after: str, limit: int) -> list[str]:
        """The tokens of the vault's cards after ``after``, in order."""
        ...

    def vault_tokens_held(
        self, statuses: frozenset[SIStatus], after: str, limit: int
    ) -> list[tuple[str, str | None]]:
        """(id, vault token) of the setup intents in one of ``statuses`` with an id after
        ``after``, by id; read without locks (a row being changed is read as it was)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A final answer kept for replay; ``body`` is sealed (encrypted) by the web layer."""

    status: int
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    done: bool
    leased_until: datetime | None
    created_at: datetime
    response: StoredResponse | None


class IdempotencyRepo(Protocol):
    """Idempotency-Key records by (scope, key): a keyed fingerprint, never the request itself."""

    def claim(
        self, scope: str, key: str, fingerprint: str, now: datetime, lease_until: datetime
    ) -> bool:
        """Write a running record unless one exists; True if this call wrote it."""
        ...

    def get(self, scope: str, key: str) -> IdempotencyRecord | None: ...

    def take_over(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        lease_until: datetime,
        expired_before: datetime,
    ) -> bool:
        """Restart a record whose lease ran out (same fingerprint) or that is past retention
        (created before ``expired_before``); True if this call did."""
        ...

    def complete(self, scope: str, key: str, fingerprint: str, response: StoredResponse) -> bool:
        """Store the final answer of a running record with this fingerprint; True if it did
        (False: no such running record, e.g. another run completed it already)."""
        ...

    def release(self, scope: str, key: str, fingerprint: str) -> None: ...
    def prune(self, created_before: datetime) -> int: ...


class Outbox(Protocol):
    def record(self, event: DomainEvent) -> None:
        """Store the event and, in the same transaction, one pending delivery for each of its
        account's subscriptions to it (fan-out at commit), due at the event's time."""
        ...


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """A webhook secret as stored: its value sealed under a key kept outside the database."""

    id: str
    sealed: bytes
    created_at: datetime
    is_active: bool


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    id: str
    account_id: str
    events: tuple[str, ...]
    url: str
    description: str | None
    secrets: tuple[SealedSecret, ...]
    created_at: datetime
    updated_at: datetime


class SecretBox(Protocol):
    """Seals webhook secrets under a key kept outside the database."""

    def seal(self, secret_id: str, value: str) -> bytes: ...
    def open(self, secret_id: str, sealed: bytes) -> str: ...


class Destinations(Protocol):
    """The destination rules of webhook URLs (CONTRACT §8.1)."""

    def check(self, url: str, mode: Mode) -> str:
        """The URL as it will be stored, if the rules allow it for an account of ``mode``
        (resolving its host); raises ``UrlNotAllowed`` otherwise."""
        ...


class WebhookSubscriptionRepo(Protocol):
    def add(self, sub: StoredSubscription) -> None:
        """Raises ``Conflict`` for a second subscription of the account to the same URL."""
        ...

    def list(self, account_id: str) -> list[StoredSubscription]: ...
    def get(self, account_id: str, sub_id: str) -> StoredSubscription | None: ...
    def find(self, sub_id: str) -> StoredSubscription | None: ...

    def save(self, sub: StoredSubscription) -> None:
        """Replace the stored fields and secrets of an existing subscription."""
        ...

    def delete(self, account_id: str, sub_id: str) -> bool:
        """Delete it, its secrets and its pending deliveries; False if there was none."""
        ...


class DeliveryRepo(Protocol):
    def next_due(self) -> datetime | None:
        """When the earliest pending delivery falls due, in real time (its account's clock
        offset taken off), or None: a read the dispatcher makes before it takes the write lock
        of a lease."""
        ...

    def lease_due(self, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        """Lease pending deliveries that are due on their account's clock (``now`` is real
        time; the account's offset is added) and not leased at ``now``, until ``until``."""
        ...

    def get(self, account_id: str, delivery_id: str) -> Delivery | None: ...
    def find(self, delivery_id: str) -> Delivery | None: ...
    def payload(self, event_id: str) -> bytes | None: ...

    def recent(self, account_id: str | None, limit: int) -> list[Delivery]:
        """The ``limit`` deliveries (of one account, or of all) created or attempted last,
        latest first."""
        ...

    def finish(self, delivery_id: str, leased_until: datetime, outcome: AttemptOutcome) -> bool:
        """Record an attempt if the lease that made it is still the delivery's (False: another
        dispatcher has it now); the lease ends."""
        ...

    def replay(self, account_id: str, delivery_id: str, now: datetime) -> Delivery | None:
        """Pending again and due at ``now`` (account clock), its attempts kept."""
        ...

    def page(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None,
        subscription_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[Delivery]:
        """Newest first by id order, after the ``after`` cursor (a delivery id)."""
        ...

    def failed_since(self, since: datetime) -> list[Delivery]: ...

    def prune(self, created_before: datetime) -> int:
        """Delete delivered deliveries, and events none of whose deliveries is still pending or
        failed, created before ``created_before``; the number of rows deleted."""
        ...


class AuditLog(Protocol):
    """The append-only table of security events (``domain.audit``): rows are added, never
    changed or removed (the database refuses UPDATE and DELETE on it)."""

    def append(self, entry: AuditEntry) -> None:
        """Add ``entry``; storage gives it the next ``seq``."""
        ...

    def recent(
        self, limit: int, *, after: int | None = None, account_id: str | None = None
    ) -> list[AuditEntry]:
        """Without ``after``: the last ``limit`` entries (of one account, or of all), oldest
        first. With ``after`` (a ``seq``): the first ``limit`` entries appended after it."""
        ...


class UnitOfWork(Protocol):
    @property
    def accounts(self) -> AccountRepo: ...
    @property
    def setup_intents(self) -> SetupIntentRepo: ...
    @property
    def payment_intents(self) -> PaymentIntentRepo: ...
    @property
    def vault(self) -> CardVault: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def webhooks(self) -> WebhookSubscriptionRepo: ...
    @property
    def deliveries(self) -> DeliveryRepo: ...
    @property
    def idempotency(self) -> IdempotencyRepo: ...
    @property
    def refunds(self) -> RefundRepo: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def card_attempts(self) -> CardAttemptRepo: ...
    @property
    def retention(self) -> RetentionRepo: ...
    @property
    def key_checks(self) -> KeyCheckRepo: ...

    def commit(self) -> None: ...


class Storage(Protocol):
    def transaction(self, *, write: bool) -> AbstractContextManager[UnitOfWork]:
        """A unit of work. Write transactions take the write lock at their start (SQLite:
        BEGIN IMMEDIATE). Leaving the block without ``commit()`` rolls back."""
        ...

    def ping(self) -> None:
        """Raise if the database does not answer."""
        ...

    def close(self) -> None: ...


class ChargeResult(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"  # the acquirer answered with an error; nothing was charged
    CARD_EXPIRED = "card_expired"
    UNKNOWN = "unknown"  # timeout, lost answer: the money may or may not have moved


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """A merchant-initiated charge of the card on file behind ``token``: no card data here.

    ``idempotency_key`` is per attempt; ``network_transaction_id`` is the one the setup
    verification returned, which the card schemes require on every stored-credential charge.
    """

    mode: Mode
    account_id: str
    token: str
    expiry: Expiry
    amount: Money
    idempotency_key: str
    network_transaction_id: str | None
    # The hard timeout of the acquirer call, in seconds (real time).
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    result: ChargeResult
    message: str
    auth_code: str | None = None


class RefundResult(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"  # the acquirer answered with an error; nothing was refunded
    UNKNOWN = "unknown"  # timeout, lost answer: the money may or may not have moved


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """A refund or reversal of a captured charge: it references the capture by the acquirer key
    of the charge attempt that captured it, never the card (forgotten once charged)."""

    mode: Mode
    account_id: str
    kind: str  # "refund" or "reversal"
    amount: Money
    idempotency_key: str  # per refund; every re-send reuses it
    capture_key: str  # the acquirer key of the captured charge
    timeout: float = 10.0  # the hard timeout of the acquirer call, in seconds (real time)


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    result: RefundResult
    message: str


class Refunder(Protocol):
    """Refunds or reverses a captured charge at the acquirer, keyed per refund."""

    def refund(self, request: RefundRequest) -> RefundOutcome: ...

    def refund_status(self, request: RefundRequest) -> RefundOutcome:
        """Ask again with the same key: an attempt the acquirer processed returns its first
        answer; one it never received is processed now (never refunds twice)."""
        ...


class Charger(Refunder, Protocol):
    """Charges a card on file by its vault token (merchant-initiated), and refunds or reverses
    a captured charge (``Refunder``). Implemented on the cardholder-data side, which alone can
    open the card."""

    def charge(self, request: ChargeRequest) -> ChargeOutcome: ...

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        """Ask the acquirer again about a charge made with the same idempotency key."""
        ...
