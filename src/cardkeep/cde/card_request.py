"""Decoding the card part of a PCI request (``cardDetails``, ``mitConsentGiven``) into card types.

HTTP-side: uses ``web.fields``; errors name the field and the rule, never the value.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from cardkeep.cde.intake import CardInput
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.card import Expiry, Scheme
from cardkeep.web.fields import MISSING, Bool, Errors, Obj, Str, add

_LONG_DIGITS = re.compile(r"[0-9]{6,}")

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
    name = data.get("cardName")
    if name is not None and _LONG_DIGITS.search(name):
        add(
            errors, "CardDetails.CardName", "The card name must not hold 6 or more digits in a row."
        )
        name = None
    if pan is None or expiry is None or cvv is None or (name is None and "cardName" in data):
        return None
    return CardInput(pan, expiry, cvv, name)
