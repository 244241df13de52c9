"""Card intake: verify the card with the acquirer (CVV in memory only), and hand the service a
masked card record plus the step that seals the PAN and stores it in its transaction.

The CVV object lives for the duration of ``create`` and is never stored, logged or serialised
(``Cvv`` refuses to be pickled). A card past its expiry month is not sent to the acquirer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from cardkeep.cde import vault_store
from cardkeep.cde.acquirers.base import Acquirer, AcquirerRefused
from cardkeep.cde.fingerprint import CardFingerprints
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.cde.vault import Vault
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AttemptType, AuthAttempt
from cardkeep.domain.card import CardOnFile, Expiry
from cardkeep.domain.errors import Unavailable
from cardkeep.domain.ids import IdFactory
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.card_limits import CardLimits
from cardkeep.service.idempotency import RecoveryPoint
from cardkeep.service.ports import UnitOfWork
from cardkeep.service.setup_intents import (
    CardApproved,
    CardDeclined,
    CardOutcome,
    CardPastExpiry,
    NewSetupIntent,
    SetupIntents,
)

CARD_EXPIRED = "Card expired"


@dataclass(frozen=True)
class CardInput:
    pan: CardNumber
    expiry: Expiry
    cvv: Cvv
    name: str | None


@dataclass(frozen=True)
class _Keep:
    """Seals and stores one card inside the setup intent's transaction, under the account's
    current data-encryption key as that transaction reads (and holds) it."""

    vault: Vault
    account_id: str
    token: str
    pan: CardNumber
    now: datetime

    def __call__(self, uow: UnitOfWork) -> None:
        vault_store.put(uow, self.vault.seal(uow, self.account_id, self.token, self.pan, self.now))


class CardIntake:
    def __init__(
        self,
        setup_intents: SetupIntents,
        vault: Vault,
        acquirer: Acquirer,
        ids: IdFactory,
        limits: CardLimits,
        fingerprints: CardFingerprints,
    ) -> None:
        self._sis = setup_intents
        self._vault = vault
        self._acquirer = acquirer
        self._ids = ids
        self._limits = limits
        self._fingerprints = fingerprints

    def create(
        self,
        account: Account,
        cmd: NewSetupIntent,
        card: CardInput,
        point: RecoveryPoint[SetupIntent] | None = None,
    ) -> SetupIntent:
        draft = self._sis.prepare(account, cmd)  # a bad request never reaches the acquirer
        attempt = self._limits.reserve(account, self._fingerprints.of(card.pan), None)
        outcome = self._counted(attempt, account, card, draft.created_at)
        try:
            also = self._limits.settle(attempt, outcome)
            return self._sis.create_with_card(draft, outcome, point, also)
        except BaseException:
            self._limits.settle_alone(attempt, outcome)
            raise

    def add_card(
        self,
        si_id: str,
        secret: str,
        card: CardInput,
        point: RecoveryPoint[SetupIntent] | None = None,
    ) -> SetupIntent:
        """The hosted page's card endpoint: the same verification and vault as ``create``, for
        a setup intent created on the API listener, authorized by its client session secret."""
        _, owner, now = self._sis.open_for_card(si_id, secret)  # refused before the acquirer
        attempt = self._limits.reserve(owner, self._fingerprints.of(card.pan), si_id)
        outcome = self._counted(attempt, owner, card, now)
        try:
            also = self._limits.settle(attempt, outcome)
            return self._sis.add_card(si_id, secret, owner, outcome, point, also)
        except BaseException:
            self._limits.settle_alone(attempt, outcome)
            raise

    def _counted(
        self, attempt: str, account: Account, card: CardInput, now: datetime
    ) -> CardOutcome:
        """The outcome of a reserved attempt; one the acquirer could not answer is released."""
        try:
            return self._verify(account, card, now)
        except BaseException:
            self._limits.release(attempt)
            raise

    def _attempt(
        self,
        now: datetime,
        event_type: AttemptType,
        message: str,
        code: str | None,
        card: CardOnFile,
    ) -> AuthAttempt:
        return AuthAttempt(self._ids.uuid4(), now, event_type, message, code, card)

    def _verify(self, account: Account, card: CardInput, now: datetime) -> CardOutcome:
        """Check the card's expiry, then ask the acquirer; seal the PAN only when approved."""
        on_file = CardOnFile(
            masked_number=card.pan.masked,
            last4=card.pan.last4,
            scheme=card.pan.scheme,
            funding_type=None,
            expiry=card.expiry,
            cardholder_name=card.name,
            vault_token=None,
        )
        declined = AttemptType.DECLINED
        if card.expiry.is_expired(now):
            return CardPastExpiry(self._attempt(now, declined, CARD_EXPIRED, None, on_file))
        try:
            found = self._acquirer.verify(account.mode, card.pan, card.expiry, card.cvv)
        except AcquirerRefused as exc:
            raise Unavailable(f"No acquirer can authorize this card: {exc}.", 30) from exc
        on_file = replace(on_file, funding_type=found.funding_type)
        if not found.approved:
            return CardDeclined(self._attempt(now, declined, found.message, None, on_file))
        token = self._vault.new_token()
        self._vault.ensure_dek(account.id, now)
        kept = replace(
            on_file,
            vault_token=token,
            network_transaction_id=found.network_transaction_id,
        )
        attempt = self._attempt(now, AttemptType.AUTHORIZED, found.message, found.auth_code, kept)
        return CardApproved(kept, attempt, _Keep(self._vault, account.id, token, card.pan, now))
