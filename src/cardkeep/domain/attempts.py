"""Acquirer answers as the API shows them: one AuthAttempt per authorization, decline or capture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cardkeep.domain.card import CardOnFile


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    """One acquirer answer about a card: an entry of ``setupEvents``/``paymentEvents``.

    ``event_type`` is one of Dojo's payment event types (Authorized, Declined, Captured, Error).
    The card is the masked card on file; no PAN or CVV is ever held here.
    """

    transaction_id: str
    at: datetime
    event_type: str
    message: str
    auth_code: str | None
    card: CardOnFile | None
