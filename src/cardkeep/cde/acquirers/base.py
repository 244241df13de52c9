"""The acquirer port, shaped as a real connector needs it.

- ``verify``: the customer-present account verification when a card is put on file (CVV in memory
  only). It returns the network transaction id that every later merchant-initiated charge of the
  card must reference (the card schemes' stored-credential rule).
- ``charge``: a merchant-initiated charge (``MitCharge``), keyed per attempt: the acquirer
  deduplicates by key and replays its first answer for a key it has seen, declines included.
- ``status``: re-send of an attempt whose answer was lost, with the same key: an attempt the
  acquirer already processed returns its first result; one it never received is processed now.
- ``refund``: a refund or reversal (``RefundCall``) of a captured charge, keyed per attempt like a
  charge. It references the capture by ``capture_key``, the acquirer key of the charge attempt that
  captured, never by the card (forgotten once the setup intent is completed).
- ``refund_status``: re-send of a refund or reversal with the same key, as ``status`` is for a
  charge (never refunds twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome, RefundOutcome


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


REFUND_KINDS = ("refund", "reversal")


@dataclass(frozen=True, slots=True)
class RefundCall:
    """A refund or reversal of a captured charge: no card data, only the capture's key."""

    mode: Mode
    kind: str  # "refund" or "reversal"
    amount: Money
    idempotency_key: str  # per attempt: every re-send reuses it
    capture_key: str  # the acquirer key of the charge attempt that captured
    timeout: float  # seconds: a connector bounds its whole call by it

    def __post_init__(self) -> None:
        if self.kind not in REFUND_KINDS:
            raise ValueError(f"a refund call's kind is one of {REFUND_KINDS}, not {self.kind!r}")


class AcquirerRefused(Exception):
    """The acquirer will not serve this account (e.g. a prod account on the sandbox acquirer)."""


class Acquirer(Protocol):
    def verify(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Verification: ...

    def charge(self, charge: MitCharge) -> ChargeOutcome: ...

    def status(self, charge: MitCharge) -> ChargeOutcome:
        """Re-send of an earlier attempt with the same key (never charges twice)."""
        ...

    def refund(self, call: RefundCall) -> RefundOutcome: ...

    def refund_status(self, call: RefundCall) -> RefundOutcome:
        """Re-send of an earlier refund or reversal with the same key (never refunds twice)."""
        ...
