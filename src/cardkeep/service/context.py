"""What every use case needs, passed explicitly: storage, clock, ids, charger and policy numbers."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardkeep.domain.account import Account
from cardkeep.domain.ids import IdFactory, Prefix
from cardkeep.service.audit import AuthFailures
from cardkeep.service.idempotency import LEASE
from cardkeep.service.ports import Charger, Clock, Storage


@dataclass(frozen=True)
class Policy:
    currencies: frozenset[str] = frozenset({"GBP", "EUR"})
    setup_intent_ttl: timedelta = timedelta(days=30)
    setup_intent_max_ttl: timedelta = timedelta(days=365)
    payment_intent_ttl: timedelta = timedelta(days=30)
    client_secret_ttl: timedelta = timedelta(minutes=30)
    client_secret_refresh_window: timedelta = timedelta(hours=24)
    client_secret_max_failures: int = 5
    payment_intent_max_ttl: timedelta = timedelta(days=365)
    # A claim older than this (real time) whose charge request is gone is re-driven by recovery,
    # which runs every ``sweep_interval``.
    recovery_after: timedelta = timedelta(seconds=30)
    sweep_interval: timedelta = timedelta(seconds=5)
    # An acquirer answer that takes longer than this (real time) counts as unknown: recovery asks
    # again with the same key, after ``recovery_after``, which is longer.
    acquirer_timeout: timedelta = timedelta(seconds=10)
    # A running Idempotency-Key's lease (real time): how long a retry waits for the first run.
    idempotency_lease: timedelta = LEASE
    sweep_batch: int = 200
    sweep_accounts: int = 1000  # accounts one worker leases per sweep
    # Card-testing defence (``service.card_limits``), over a sliding window of real time; 0 turns
    # a limit off. Failed card attempts (declined, or past their expiry month) per account and
    # per setup intent paid through a client session secret, distinct cards tried per such setup
    # intent, and approved card entries per account (off unless configured).
    card_window: timedelta = timedelta(minutes=10)
    card_failed_per_account: int = 1000
    card_failed_per_secret: int = 5
    card_cards_per_secret: int = 3
    card_approved_per_account: int = 0
    # The sandbox clock's total offset may not exceed 100 years (CONTRACT §7.3).
    max_clock_offset: timedelta = timedelta(seconds=3_155_760_000)

    def recovery_wait(self, claimed_at: datetime | None, now: datetime) -> int:
        """Seconds until recovery will have asked about a claim made at ``claimed_at`` (real
        time; None: a claim made now): the Retry-After of a charge whose outcome is unknown."""
        due = (claimed_at or now) + self.recovery_after + self.sweep_interval
        return max(1, math.ceil((due - now).total_seconds()))


@dataclass(frozen=True)
class Context:
    storage: Storage
    clock: Clock
    ids: IdFactory
    charger: Charger
    policy: Policy = field(default_factory=Policy)
    # This process's count of refused secret keys (``service.audit``), shared by both listeners.
    failures: AuthFailures = field(default_factory=AuthFailures)

    def now(self, account: Account) -> datetime:
        return account.now(self.clock.now())

    def event_id(self) -> str:
        return self.ids.new(Prefix.EVENT)


def secret_hash(secret: str) -> str:
    """SHA-256 of a key or client session secret: the only form in which either is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
