"""The sandbox acquirer: the contract's test cards (§7.1) and charge outcomes by amount (§7.2).

In-process and deterministic. It keeps a ledger of charges by idempotency key, so a repeated
request is answered from the ledger and never charges twice. Prod accounts are refused unless the
operator explicitly allows them, and then get no amount triggers.
"""

from __future__ import annotations

import secrets
import threading

from cardkeep.cde.acquirers.base import AcquirerRefused, Authorization
from cardkeep.domain.account import Mode
from cardkeep.domain.card import CardNumber, Cvv, Expiry, Scheme
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome, ChargeResult

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


class SandboxAcquirer:
    def __init__(self, *, allow_prod: bool = False) -> None:
        self._allow_prod = allow_prod
        self._ledger: dict[str, ChargeOutcome] = {}
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self.authorizations = 0

    def _check_mode(self, mode: Mode) -> None:
        if mode is Mode.PROD and not self._allow_prod:
            raise AcquirerRefused("prod accounts are not served by the sandbox acquirer")

    @staticmethod
    def _auth_code() -> str:
        return f"{secrets.randbelow(1_000_000):06d}"

    def authorize(self, mode: Mode, pan: CardNumber, expiry: Expiry, cvv: Cvv) -> Authorization:
        self._check_mode(mode)
        with self._lock:
            self.authorizations += 1
        funding = _FUNDING.get(pan.scheme, "Credit")
        reason = DECLINED_CARDS.get(pan.digits)
        if reason is not None:
            return Authorization(False, reason, None, funding)
        return Authorization(True, "AUTHORISED", self._auth_code(), funding)

    def _decide(self, mode: Mode, amount: Money) -> ChargeOutcome:
        if mode is Mode.SANDBOX and amount.value % 100 != LOST_ANSWER:
            triggered = _AMOUNT_TRIGGERS.get(amount.value % 100)
            if triggered is not None:
                return triggered
        return ChargeOutcome(ChargeResult.APPROVED, APPROVED_MESSAGE, self._auth_code())

    def charge(
        self, mode: Mode, pan: CardNumber, expiry: Expiry, amount: Money, idempotency_key: str
    ) -> ChargeOutcome:
        self._check_mode(mode)
        with self._lock:
            self._sent[idempotency_key] = self._sent.get(idempotency_key, 0) + 1
            known = self._ledger.get(idempotency_key)
            if known is not None and known.result is ChargeResult.APPROVED:
                return known
            outcome = self._decide(mode, amount)
            if outcome.result is ChargeResult.APPROVED:
                self._ledger[idempotency_key] = outcome
        if mode is Mode.SANDBOX and amount.value % 100 == LOST_ANSWER:
            return ChargeOutcome(ChargeResult.UNKNOWN, "The acquirer's answer was lost")
        return outcome

    def status(
        self, mode: Mode, pan: CardNumber, expiry: Expiry, amount: Money, idempotency_key: str
    ) -> ChargeOutcome:
        self._check_mode(mode)
        with self._lock:
            known = self._ledger.get(idempotency_key)
        if known is not None:
            return known
        # Not in this process's ledger (another worker, or a restart): the sandbox is
        # deterministic, so the answer is the one the charge got, and a lost answer was approved.
        return self._decide(mode, amount)

    def times_sent(self, idempotency_key: str) -> int:
        """How many charge requests carried this key (for tests of exactly-once)."""
        with self._lock:
            return self._sent.get(idempotency_key, 0)
