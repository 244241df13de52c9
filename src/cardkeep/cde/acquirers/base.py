"""The acquirer port, shaped as a real connector needs it.

- ``verify``: the customer-present account verification when a card is put on file (CVV in memory
  only). It returns the network transaction id that every later merchant-initiated charge of the
  card must reference (the card schemes' stored-credential rule).
- ``charge``: a merchant-initiated charge (``MitCharge``), keyed per attempt: the acquirer
  deduplicates by key and replays its first answer for a key it has seen, declines included.
- ``status``: re-send of an attempt whose answer was lost, with the same key: an attempt the
  acquirer already processed returns its first result; one it never received is processed now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome


@dataclass(frozen=True, slots=True)
class Verification:
    approved: bool
    message: str
    auth_code: str | None
    funding_type: str | None
    network_transaction_id: str | None


@dataclass(frozen=True, slots=True)
class MitCharge:
    """A merchant-initiated charge of a stored credential."""

    mode: Mode
    pan: CardNumber
    expiry: Expiry
    amount: Money
    idempotency_key: str
    network_transaction_id: str | None
    timeout: float  # seconds: a connector bounds its whole call by it


class AcquirerRefused(Exception):
    """The acquirer will not serve this account (e.g. a prod account on the sandbox acquirer)."""


class Acquirer(Protocol):
    def verify(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Verification: ...

    def charge(self, charge: MitCharge) -> ChargeOutcome: ...

    def status(self, charge: MitCharge) -> ChargeOutcome:
        """Re-send of an earlier attempt with the same key (never charges twice)."""
        ...
