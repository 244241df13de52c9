"""The Charger the service uses: loads the sealed card by token, opens it, and sends the MIT
charge to the acquirer with the card's network transaction id; refunds and reversals of a captured
charge go to the acquirer by the capture's key, with no card (``refunder``).

The plaintext PAN exists only inside these calls, in memory. The sealed card is read in its own
short read transaction: nothing is held open across the acquirer call.
"""

from __future__ import annotations

from cardkeep.cde import vault_store
from cardkeep.cde.acquirers.base import Acquirer, MitCharge
from cardkeep.cde.pan import CardNumber
from cardkeep.cde.refunder import AcquirerRefunder
from cardkeep.cde.vault import Vault, VaultError
from cardkeep.cde.vault_store import SealedCard
from cardkeep.logs import get_logger
from cardkeep.service.ports import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    RefundOutcome,
    RefundRequest,
    Storage,
)

log = get_logger("cardkeep.charger")
UNREADABLE = "The card on file cannot be read with the loaded vault key"
NOT_ON_FILE = "The card is no longer on file"


class VaultCharger:
    def __init__(self, storage: Storage, vault: Vault, acquirer: Acquirer) -> None:
        self._storage = storage
        self._vault = vault
        self._acquirer = acquirer
        self._refunder = AcquirerRefunder(acquirer)

    def _read(self, request: ChargeRequest) -> SealedCard | None:
        with self._storage.transaction(write=False) as uow:
            sealed = vault_store.get(uow, request.token)
        if sealed is None or sealed.account_id != request.account_id:
            return None
        return sealed

    def _open(self, request: ChargeRequest) -> CardNumber | str:
        """The card, or why it cannot be opened. A card re-sealed by a rotation between the read
        and the opening (its old key retired meanwhile) is read once more."""
        sealed = self._read(request)
        if sealed is None:
            return NOT_ON_FILE
        reason = ""
        try:
            return self._vault.open(sealed)
        except VaultError as exc:
            reason = str(exc)
        again = self._read(request)
        if again is not None and again.key_id != sealed.key_id:
            try:
                return self._vault.open(again)
            except VaultError as exc:
                reason = str(exc)
        log.error("vault_open_failed", token=request.token, reason=reason)
        return UNREADABLE

    def _mit(self, request: ChargeRequest, pan: CardNumber) -> MitCharge:
        return MitCharge(
            request.mode,
            pan,
            request.expiry,
            request.amount,
            request.idempotency_key,
            request.network_transaction_id,
            request.timeout,
        )

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._open(request)
        if isinstance(pan, str):  # nothing reached the acquirer: a definite failure
            return ChargeOutcome(ChargeResult.FAILED, pan)
        return self._acquirer.charge(self._mit(request, pan))

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._open(request)
        if isinstance(pan, str):  # the first attempt may have reached the acquirer: stay unknown
            return ChargeOutcome(ChargeResult.UNKNOWN, pan)
        return self._acquirer.status(self._mit(request, pan))

    def refund(self, request: RefundRequest) -> RefundOutcome:
        return self._refunder.refund(request)

    def refund_status(self, request: RefundRequest) -> RefundOutcome:
        return self._refunder.refund_status(request)
