"""The Charger the service uses: opens the sealed card and sends the MIT charge to the acquirer.

The plaintext PAN exists only inside these calls, in memory.
"""

from __future__ import annotations

from cardkeep.cde.acquirers.base import Acquirer
from cardkeep.cde.vault import Vault
from cardkeep.service.ports import ChargeOutcome, ChargeRequest


class VaultCharger:
    def __init__(self, vault: Vault, acquirer: Acquirer) -> None:
        self._vault = vault
        self._acquirer = acquirer

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._vault.open(request.card)
        return self._acquirer.charge(
            request.mode, pan, request.expiry, request.amount, request.idempotency_key
        )

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        pan = self._vault.open(request.card)
        return self._acquirer.status(
            request.mode, pan, request.expiry, request.amount, request.idempotency_key
        )
