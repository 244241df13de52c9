"""What every use case needs, passed explicitly: storage, clock, ids, charger and policy numbers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardkeep.domain.account import Account
from cardkeep.domain.ids import IdFactory, Prefix
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
    # A claim older than this whose charge request is gone is re-driven by recovery.
    recovery_after: timedelta = timedelta(seconds=30)
    sweep_batch: int = 200


@dataclass(frozen=True)
class Context:
    storage: Storage
    clock: Clock
    ids: IdFactory
    charger: Charger
    policy: Policy = field(default_factory=Policy)

    def now(self, account: Account) -> datetime:
        return account.now(self.clock.now())

    def event_id(self) -> str:
        return self.ids.new(Prefix.EVENT)


def secret_hash(secret: str) -> str:
    """SHA-256 of a key or client session secret: the only form in which either is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
