"""The sandbox acquirer: the contract's test cards (§7.1) and charge outcomes by amount (§7.2),
and refunds and reversals of its captured charges, with outcomes by amount from the same table.

In-process and deterministic. It keeps a ledger of charges, refunds and reversals by idempotency
key in the service database (``ledger.StorageLedger``), as a real acquirer keeps its own: a key it
has seen gets its first answer again (a decline too), so a repeated attempt never charges or
refunds twice, in any process or after a restart; an attempt it never received is processed when
it is first asked about. Like a real acquirer it refuses a refund that cannot be right: one of no
approved capture, or one that would take the capture's refunds past its amount. Prod accounts are
refused unless the operator explicitly allows them, and then get no amount triggers.
"""

from __future__ import annotations

import secrets
import threading
from functools import partial

from cardkeep.cde.acquirers.base import AcquirerRefused, MitCharge, RefundCall, Verification
from cardkeep.cde.acquirers.ledger import Capture, Ledger, RefundEntry
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry, Scheme
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome, ChargeResult, RefundOutcome, RefundResult

DECLINED_CARDS = {
    "4456530000001013": "Do not honour",
    "4000000000000002": "Do not honour",
    "4000000000009995": "Insufficient funds",
}
_FUNDING = {Scheme.VISA: "Debit", Scheme.MAESTRO: "Debit"}

APPROVED_MESSAGE = "DEPOSITED"
_AMOUNT_TRIGGERS = {
    51: ChargeOutcome(ChargeResult.DECLINED, "Insufficient funds"),
    5: ChargeOutcome(ChargeResult.DECLINED, "Do not honour"),
    98: ChargeOutcome(ChargeResult.FAILED, "Acquirer unavailable"),
}
LOST_ANSWER = 99
LOST_MESSAGE = "The acquirer's answer was lost"

REFUNDED_MESSAGES = {"refund": "REFUNDED", "reversal": "REVERSED"}
_REFUND_TRIGGERS = {
    51: RefundOutcome(RefundResult.DECLINED, "Insufficient funds"),
    5: RefundOutcome(RefundResult.DECLINED, "Do not honour"),
    98: RefundOutcome(RefundResult.FAILED, "Acquirer unavailable"),
}
NO_SUCH_CAPTURE = "No such capture"
EXCEEDS_THE_CAPTURE = "Amount exceeds the capture"


class SandboxAcquirer:
    def __init__(self, ledger: Ledger, *, allow_prod: bool = False) -> None:
        self._ledger = ledger
        self._allow_prod = allow_prod
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self.verifications = 0

    def _check_mode(self, mode: Mode) -> None:
        if mode is Mode.PROD and not self._allow_prod:
            raise AcquirerRefused("prod accounts are not served by the sandbox acquirer")

    @staticmethod
    def _auth_code() -> str:
        return f"{secrets.randbelow(1_000_000):06d}"

    def verify(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Verification:
        self._check_mode(mode)
        funding = _FUNDING.get(pan.scheme, "Credit")
        reason = DECLINED_CARDS.get(pan.digits)
        with self._lock:
            self.verifications += 1
        if reason is not None:
            return Verification(False, reason, None, funding, None)
        network_id = f"sbxnt_{secrets.token_hex(8)}"
        return Verification(True, "AUTHORISED", self._auth_code(), funding, network_id)

    def _decide(self, charge: MitCharge) -> ChargeOutcome:
        if charge.mode is Mode.SANDBOX and charge.amount.value % 100 != LOST_ANSWER:
            triggered = _AMOUNT_TRIGGERS.get(charge.amount.value % 100)
            if triggered is not None:
                return triggered
        return ChargeOutcome(ChargeResult.APPROVED, APPROVED_MESSAGE, self._auth_code())

    def _process(self, charge: MitCharge) -> ChargeOutcome:
        """The answer for this key: the first one recorded, or a new decision recorded now."""
        known = self._ledger.answer(charge.idempotency_key)
        if known is not None:
            return known
        decided = self._decide(charge)
        return self._ledger.first_answer(
            charge.idempotency_key, decided, charge.network_transaction_id, charge.amount.value
        )

    def _sending(self, mode: Mode, key: str) -> None:
        """A first send (not a re-send) with ``key``: refused for a mode not served, counted."""
        self._check_mode(mode)
        with self._lock:
            self._sent[key] = self._sent.get(key, 0) + 1

    @staticmethod
    def _answer_lost(mode: Mode, amount: Money) -> bool:
        """The sandbox's lost answer: the acquirer acted, the caller never hears it."""
        return mode is Mode.SANDBOX and amount.value % 100 == LOST_ANSWER

    def charge(self, charge: MitCharge) -> ChargeOutcome:
        self._sending(charge.mode, charge.idempotency_key)
        outcome = self._process(charge)
        if self._answer_lost(charge.mode, charge.amount):
            return ChargeOutcome(ChargeResult.UNKNOWN, LOST_MESSAGE)
        return outcome

    def status(self, charge: MitCharge) -> ChargeOutcome:
        self._check_mode(charge.mode)
        return self._process(charge)

    @staticmethod
    def _decide_refund(call: RefundCall, capture: Capture | None, refunded: int) -> RefundOutcome:
        """A new refund's answer: the capture checks first (a real acquirer's), then the amount's
        trigger (sandbox accounts only), else approved."""
        if capture is None:
            return RefundOutcome(RefundResult.DECLINED, NO_SUCH_CAPTURE)
        if capture.amount is not None and refunded + call.amount.value > capture.amount:
            return RefundOutcome(RefundResult.DECLINED, EXCEEDS_THE_CAPTURE)
        if call.mode is Mode.SANDBOX and call.amount.value % 100 != LOST_ANSWER:
            triggered = _REFUND_TRIGGERS.get(call.amount.value % 100)
            if triggered is not None:
                return triggered
        return RefundOutcome(RefundResult.APPROVED, REFUNDED_MESSAGES[call.kind])

    def _process_refund(self, call: RefundCall) -> RefundOutcome:
        """The answer for this key: the first one recorded, or a new decision recorded now."""
        entry = RefundEntry(call.idempotency_key, call.kind, call.capture_key, call.amount.value)
        return self._ledger.first_refund_answer(entry, partial(self._decide_refund, call))

    def refund(self, call: RefundCall) -> RefundOutcome:
        """A refund or reversal (``call.kind``) of the capture ``call.capture_key``."""
        self._sending(call.mode, call.idempotency_key)
        outcome = self._process_refund(call)
        if self._answer_lost(call.mode, call.amount):
            return RefundOutcome(RefundResult.UNKNOWN, LOST_MESSAGE)
        return outcome

    def refund_status(self, call: RefundCall) -> RefundOutcome:
        self._check_mode(call.mode)
        return self._process_refund(call)

    def times_sent(self, idempotency_key: str) -> int:
        """How many charge, refund or reversal requests (not re-sends) this process sent with this
        key (for tests)."""
        with self._lock:
            return self._sent.get(idempotency_key, 0)
