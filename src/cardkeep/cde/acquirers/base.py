"""The Acquirer protocol: authorize a card (customer present, CVV) and charge it later (MIT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cardkeep.domain.account import Mode
from cardkeep.domain.card import CardNumber, Cvv, Expiry
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome


@dataclass(frozen=True, slots=True)
class Authorization:
    approved: bool
    message: str
    auth_code: str | None
    funding_type: str | None


class AcquirerRefused(Exception):
    """The acquirer will not serve this account (e.g. a prod account on the sandbox acquirer)."""


class Acquirer(Protocol):
    def authorize(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Authorization: ...

    def charge(
        self, mode: Mode, pan: CardNumber, expiry: Expiry, amount: Money, idempotency_key: str
    ) -> ChargeOutcome: ...

    def status(
        self, mode: Mode, pan: CardNumber, expiry: Expiry, amount: Money, idempotency_key: str
    ) -> ChargeOutcome:
        """The outcome of an earlier charge with this idempotency key (never charges again)."""
        ...
