"""Fakes for the ports a unit test wants to script (never the thing under test)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from cardkeep.cde.acquirers.base import MitCharge, RefundCall, Verification
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.service.ports import ChargeOutcome, ChargeResult, RefundOutcome, RefundResult

APPROVED = ChargeOutcome(ChargeResult.APPROVED, "DEPOSITED", "123456")


@dataclass
class ScriptedAcquirer:
    """An acquirer whose charge answers the test queues (approved when the queue is empty). It
    keeps a ledger by key as a real one does, and records every request it got."""

    answers: deque[ChargeOutcome] = field(default_factory=deque)
    network_transaction_id: str = "nt_test_1"
    verifications: list[str] = field(default_factory=list)  # masked PANs
    charges: list[MitCharge] = field(default_factory=list)
    resends: list[MitCharge] = field(default_factory=list)
    ledger: dict[str, ChargeOutcome] = field(default_factory=dict)
    refunds: dict[str, RefundOutcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Verification:
        with self._lock:
            self.verifications.append(pan.masked)
        return Verification(True, "AUTHORISED", "654321", "Credit", self.network_transaction_id)

    def charge(self, charge: MitCharge) -> ChargeOutcome:
        with self._lock:
            self.charges.append(charge)
            if charge.idempotency_key in self.ledger:
                return self.ledger[charge.idempotency_key]
            outcome = self.answers.popleft() if self.answers else APPROVED
            if outcome.result is not ChargeResult.UNKNOWN:
                self.ledger[charge.idempotency_key] = outcome
            return outcome

    def status(self, charge: MitCharge) -> ChargeOutcome:
        with self._lock:
            self.resends.append(charge)
            return self.ledger.setdefault(charge.idempotency_key, APPROVED)

    def refund(self, call: RefundCall) -> RefundOutcome:
        """Refunds and reversals are approved, once per key."""
        with self._lock:
            message = "REVERSED" if call.kind == "reversal" else "REFUNDED"
            return self.refunds.setdefault(
                call.idempotency_key, RefundOutcome(RefundResult.APPROVED, message)
            )

    def refund_status(self, call: RefundCall) -> RefundOutcome:
        return self.refund(call)

    def keys(self) -> list[str]:
        return [c.idempotency_key for c in self.charges]
