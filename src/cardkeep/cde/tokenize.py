"""Card intake: validate the card, authorize it (CVV in memory only), seal the PAN, and hand the
service a masked card record plus the sealed card.

The CVV object lives for the duration of ``authorize`` and is never stored, logged or serialised
(``Cvv`` refuses to be pickled). A card past its expiry month is not sent to the acquirer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cardkeep.cde.acquirers.base import Acquirer, AcquirerRefused
from cardkeep.cde.vault import Vault
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardNumber, CardOnFile, Cvv, Expiry, Scheme
from cardkeep.domain.errors import Unavailable
from cardkeep.domain.ids import IdFactory
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.setup_intents import (
    CardApproved,
    CardDeclined,
    CardOutcome,
    CardPastExpiry,
    NewSetupIntent,
    SetupIntents,
)
from cardkeep.web.fields import MISSING, Bool, Errors, Obj, Str, add


@dataclass(frozen=True)
class CardInput:
    pan: CardNumber
    expiry: Expiry
    cvv: Cvv
    name: str | None


CARD_FIELDS = Obj(
    "cardDetails",
    [
        Str("cardNumber", required=True),
        Str("expiryDate", required=True),
        Str("cv2", required=True),
        Str("cardName", max_len=100),
    ],
    required=True,
)


def read_card(
    body: Any, errors: Errors, schemes: frozenset[str], now: datetime
) -> CardInput | None:
    """Decode ``cardDetails`` and ``mitConsentGiven``; errors name the field, never the value."""
    if not isinstance(body, dict):
        return None
    # ``cV2`` (Dojo's spelling) matches ``cv2``: field names are case-insensitive.
    data = CARD_FIELDS.read(body, "", errors)
    consent = Bool("mitConsentGiven").read(body, "", errors)
    if consent is False:
        add(
            errors,
            "MitConsentGiven",
            "A card kept for merchant-initiated charges needs the customer's consent.",
        )
    if data is MISSING:
        return None
    pan = expiry = None
    scheme: Scheme | None = None
    if "cardNumber" in data:
        try:
            pan = CardNumber(data["cardNumber"])
        except ValueError as exc:
            add(errors, "CardDetails.CardNumber", f"The card number {exc}.")
        else:
            scheme = pan.scheme  # the CV2 rule follows the card even when its scheme is refused
            if pan.scheme.value not in schemes:
                add(errors, "CardDetails.CardNumber", f"{pan.scheme.value} cards are not accepted.")
                pan = None
    if "expiryDate" in data:
        try:
            expiry = Expiry.parse(data["expiryDate"])
        except ValueError as exc:
            add(errors, "CardDetails.ExpiryDate", f"The expiry date {exc}.")
        else:
            if expiry.too_far_ahead(now):
                add(errors, "CardDetails.ExpiryDate", "The expiry date is too far in the future.")
                expiry = None
    cvv = None
    if "cv2" in data:
        try:
            cvv = Cvv(data["cv2"], scheme)
        except ValueError as exc:
            add(errors, "CardDetails.Cv2", f"The CV2 {exc}.")
    if pan is None or expiry is None or cvv is None:
        return None
    return CardInput(pan, expiry, cvv, data.get("cardName"))


class CardIntake:
    def __init__(
        self,
        setup_intents: SetupIntents,
        vault: Vault,
        acquirer: Acquirer,
        ids: IdFactory,
    ) -> None:
        self._sis = setup_intents
        self._vault = vault
        self._acquirer = acquirer
        self._ids = ids

    def create(self, account: Account, cmd: NewSetupIntent, card: CardInput) -> SetupIntent:
        draft = self._sis.prepare(account, cmd)  # a bad request never reaches the acquirer
        now = draft.created_at
        on_file = CardOnFile(
            masked_number=card.pan.masked,
            last4=card.pan.last4,
            scheme=card.pan.scheme,
            funding_type=None,
            expiry=card.expiry,
            cardholder_name=card.name,
            vault_token=None,
        )
        outcome = self._authorize(account, card, on_file, now)
        return self._sis.create_with_card(draft, outcome)

    def _attempt(
        self, now: datetime, event_type: str, message: str, code: str | None, card: CardOnFile
    ) -> AuthAttempt:
        return AuthAttempt(self._ids.uuid4(), now, event_type, message, code, card)

    def _authorize(
        self, account: Account, card: CardInput, on_file: CardOnFile, now: datetime
    ) -> CardOutcome:
        if card.expiry.is_expired(now):
            return CardPastExpiry(self._attempt(now, "Declined", "Card expired", None, on_file))
        try:
            auth = self._acquirer.authorize(account.mode, card.pan, card.expiry, card.cvv)
        except AcquirerRefused as exc:
            raise Unavailable(f"No acquirer can authorize this card: {exc}.", 30) from exc
        on_file = replace(on_file, funding_type=auth.funding_type)
        if not auth.approved:
            return CardDeclined(self._attempt(now, "Declined", auth.message, None, on_file))
        sealed = self._vault.seal(account.id, card.pan, now)
        kept = replace(on_file, vault_token=sealed.token)
        attempt = self._attempt(now, "Authorized", auth.message, auth.auth_code, kept)
        return CardApproved(kept, sealed, attempt)
