"""The Charger the service uses: opens the sealed card and sends the MIT charge to the acquirer.

The plaintext PAN exists only inside these calls, in memory.
"""

from __future__ import annotations

from cardkeep.cde.acquirers.base import Acquirer
from cardkeep.cde.vault import Vault, VaultError
from cardkeep.domain.card import CardNumber
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, ChargeResult
from cardkeep.web.logs import get_logger

log = get_logger("cardkeep.charger")
UNREADABLE = "The card on file cannot be read with the loaded vault key"


class VaultCharger:
    def __init__(self, vault: Vault, acquirer: Acquirer) -> None:
        self._vault = vault
        self._acquirer = acquirer

    def _open(self, request: ChargeRequest) -> CardNumber | None:
        try:
            return self._vault.open(request.card)
        except VaultError as exc:
            log.error("vault_open_failed", token=request.card.token, reason=str(exc))
            return None

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._open(request)
        if pan is None:  # nothing reached the acquirer: a definite failure, not an unknown one
            return ChargeOutcome(ChargeResult.FAILED, UNREADABLE)
        return self._acquirer.charge(
            request.mode, pan, request.expiry, request.amount, request.idempotency_key
        )

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._open(request)
        if pan is None:  # the first attempt may have reached the acquirer: stay unknown
            return ChargeOutcome(ChargeResult.UNKNOWN, UNREADABLE)
        return self._acquirer.status(
            request.mode, pan, request.expiry, request.amount, request.idempotency_key
        )
