"""The audit log's record: one security event — who (``actor``), what (``action``), on what
(``subject``), when (``at``, real time), with which ``outcome`` and how many times (``count``, more
than one only for aggregated authentication failures).

An entry never holds card data: the card of an authorization or a charge is named by its masked
number, its last four digits and its vault token. ``AuditEntry`` masks any run of digits that
could be a card number in every text it holds (``card.mask_pans``), so a mistake upstream never
writes one (and never stops the change the entry records).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from cardkeep.domain.card import CardOnFile, mask_pans

SYSTEM = "system"
CLI = "cli"


class Action(StrEnum):
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    AUTH_FAILED = "auth.failed"
    # A PAN was used: sent to the acquirer for a verification (setup) or a charge.
    CARD_AUTHORIZATION = "card.authorization"
    CARD_CHARGE = "card.charge"
    # A card attempt refused by the card-testing limits before the acquirer was asked.
    CARD_RATE_LIMITED = "card.rate_limited"


class Outcome(StrEnum):
    OK = "ok"
    DENIED = "denied"
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    CARD_EXPIRED = "card_expired"


def account_actor(account_id: str) -> str:
    """A request made with one of the account's secret keys."""
    return f"account:{account_id}"


def page_actor(si_id: str) -> str:
    """The hosted card page of a setup intent (its client session secret)."""
    return f"page:{si_id}"


def card_detail(card: CardOnFile | None) -> dict[str, str]:
    """How an entry names a card: masked number, last four digits, scheme and vault token."""
    if card is None:
        return {}
    detail = {"card": card.masked_number, "last4": card.last4, "scheme": card.scheme.value}
    if card.vault_token is not None:
        detail["vault_token"] = card.vault_token
    return detail


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str
    action: str
    subject: str
    outcome: str
    account_id: str | None = None
    count: int = 1
    detail: Mapping[str, str] = field(default_factory=dict)
    # The append order, assigned by storage (None until stored).
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("an audit entry counts at least one event")
        for name in ("actor", "action", "subject", "outcome"):
            object.__setattr__(self, name, mask_pans(getattr(self, name)))
        detail = {mask_pans(k): mask_pans(v) for k, v in self.detail.items()}
        object.__setattr__(self, "detail", MappingProxyType(detail))
