"""The sandbox acquirer's ledger, kept in the service database through a port: the first answer to
each charge, refund and reversal attempt by its idempotency key, with the amount it moved and, for
a refund or reversal, the key of the capture it returns money from. Every process (and, with
PostgreSQL, every host) sees the same ledger, and it survives restarts, so a re-send after a crash
gets the first answer, and an attempt the acquirer never received is processed exactly once, when
it is first asked about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from cardkeep.cde.acquirers.base import REFUND_KINDS
from cardkeep.service.ports import (
    ChargeOutcome,
    ChargeResult,
    Clock,
    RefundOutcome,
    RefundResult,
    Storage,
)

# idempotency key, result, message, auth code, network transaction id, created at, amount (minor
# units), capture key (what a refund or reversal returns money from), kind (charge/refund/reversal)
LedgerRow = tuple[
    str, str, str, str | None, str | None, datetime, int | None, str | None, str | None
]

CHARGE = "charge"
NAMES_A_CHARGE = "The idempotency key names a charge, not a refund"


@runtime_checkable
class LedgerRows(Protocol):
    """What a storage adapter's ``uow.sandbox_ledger`` provides."""

    def first(self, row: LedgerRow) -> LedgerRow: ...
    def get(self, key: str) -> LedgerRow | None: ...
    def hold(self, key: str) -> None: ...
    def refunded(self, capture_key: str, kinds: tuple[str, ...], result: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Capture:
    """An approved charge as the ledger knows it. ``amount`` is None for a charge recorded before
    the ledger kept amounts."""

    key: str
    amount: int | None


@dataclass(frozen=True, slots=True)
class RefundEntry:
    """A refund or reversal attempt as the ledger records it."""

    key: str
    kind: str  # "refund" or "reversal"
    capture_key: str
    amount: int  # minor units


# Given the capture (None: no approved charge under that key) and the total already refunded
# against it, the answer to a refund the ledger has not seen.
RefundDecision = Callable[[Capture | None, int], RefundOutcome]


class Ledger(Protocol):
    """The port the sandbox acquirer keeps its answers through."""

    def first_answer(
        self,
        key: str,
        outcome: ChargeOutcome,
        network_transaction_id: str | None,
        amount: int | None = None,
    ) -> ChargeOutcome:
        """Record ``outcome`` for the charge ``key`` unless an answer is recorded already; the one
        that stands (the first)."""
        ...

    def answer(self, key: str) -> ChargeOutcome | None: ...

    def first_refund_answer(self, entry: RefundEntry, decide: RefundDecision) -> RefundOutcome:
        """The answer recorded for ``entry.key``, or ``decide``'s, recorded now. Deciding and
        recording are one transaction that holds the capture, so concurrent refunds of one capture
        are decided one after the other, each seeing the ones before it."""
        ...

    def capture(self, capture_key: str) -> Capture | None:
        """The approved charge recorded under ``capture_key``, if any."""
        ...

    def refunded(self, capture_key: str) -> int:
        """The total of the approved refunds and reversals recorded against ``capture_key``."""
        ...


class StorageLedger:
    """The ledger as a table of the service database, each write in its own short transaction."""

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    @staticmethod
    def _rows(uow: object) -> LedgerRows:
        rows = getattr(uow, "sandbox_ledger", None)
        if not isinstance(rows, LedgerRows):
            raise TypeError(f"{type(uow).__name__} keeps no sandbox ledger")
        return rows

    def first_answer(
        self,
        key: str,
        outcome: ChargeOutcome,
        network_transaction_id: str | None,
        amount: int | None = None,
    ) -> ChargeOutcome:
        row: LedgerRow = (
            key,
            outcome.result.value,
            outcome.message,
            outcome.auth_code,
            network_transaction_id,
            self._clock.now(),
            amount,
            None,
            CHARGE,
        )
        with self._storage.transaction(write=True) as uow:
            stood = self._rows(uow).first(row)
            uow.commit()
        return _outcome(stood)

    def answer(self, key: str) -> ChargeOutcome | None:
        with self._storage.transaction(write=False) as uow:
            row = self._rows(uow).get(key)
        return None if row is None else _outcome(row)

    def first_refund_answer(self, entry: RefundEntry, decide: RefundDecision) -> RefundOutcome:
        with self._storage.transaction(write=True) as uow:
            rows = self._rows(uow)
            rows.hold(entry.capture_key)
            known = rows.get(entry.key)
            if known is not None:
                return _refund_outcome(known)
            capture = _capture(rows.get(entry.capture_key))
            refunded = rows.refunded(entry.capture_key, REFUND_KINDS, RefundResult.APPROVED.value)
            decided = decide(capture, refunded)
            row: LedgerRow = (
                entry.key,
                decided.result.value,
                decided.message,
                None,
                None,
                self._clock.now(),
                entry.amount,
                entry.capture_key,
                entry.kind,
            )
            stood = rows.first(row)
            uow.commit()
        return _refund_outcome(stood)

    def capture(self, capture_key: str) -> Capture | None:
        with self._storage.transaction(write=False) as uow:
            return _capture(self._rows(uow).get(capture_key))

    def refunded(self, capture_key: str) -> int:
        with self._storage.transaction(write=False) as uow:
            rows = self._rows(uow)
            return rows.refunded(capture_key, REFUND_KINDS, RefundResult.APPROVED.value)


def _outcome(row: LedgerRow) -> ChargeOutcome:
    return ChargeOutcome(ChargeResult(row[1]), row[2], row[3])


def _refund_outcome(row: LedgerRow) -> RefundOutcome:
    if row[8] not in REFUND_KINDS:  # a charge's key re-used for a refund: never replay a charge
        return RefundOutcome(RefundResult.DECLINED, NAMES_A_CHARGE)
    return RefundOutcome(RefundResult(row[1]), row[2])


def _capture(row: LedgerRow | None) -> Capture | None:
    if row is None or row[8] != CHARGE or row[1] != ChargeResult.APPROVED.value:
        return None
    return Capture(row[0], row[6])
