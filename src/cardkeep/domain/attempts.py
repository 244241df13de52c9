"""Acquirer answers as the API shows them: one AuthAttempt per authorization, decline or capture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cardkeep.domain.card import CardOnFile


class AttemptType(StrEnum):
    """Dojo's payment event types, as ``setupEvents``/``paymentEvents`` spell them."""

    AUTHORIZED = "Authorized"
    DECLINED = "Declined"
    CAPTURED = "Captured"
    REFUNDED = "Refunded"
    REVERSED = "Reversed"
    ERROR = "Error"
    UNKNOWN = "Unknown"  # a charge in flight whose outcome is not known yet


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    """One acquirer answer about a card: an entry of ``setupEvents``/``paymentEvents``.

    The card is the masked card on file; no PAN or CVV is ever held here.
    """

    transaction_id: str
    at: datetime
    event_type: AttemptType
    message: str
    auth_code: str | None
    card: CardOnFile | None
