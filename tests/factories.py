"""Domain records for tests that need one without going through the services."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cardkeep.domain.card import CardOnFile, Expiry, Scheme
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.payment_intent import Status as PIStatus
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.domain.setup_intent import Status as SIStatus

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CARD = CardOnFile(
    "520000******1005", "1005", Scheme.MASTERCARD, "Credit", Expiry(12, 2026), None, "vt_x"
)


def make_si(
    status: SIStatus = SIStatus.CREATED,
    *,
    id_: str = "si_sandbox_x",
    account_id: str = "acc_x",
    **changes: Any,
) -> SetupIntent:
    base = SetupIntent(
        id=id_,
        account_id=account_id,
        status=status,
        created_at=T0,
        updated_at=T0,
        expire_at=T0 + timedelta(days=30),
        reference="r",
        terms="t",
        mit_type="NoShow",
    )
    return replace(base, **changes)


def make_pi(
    status: PIStatus = PIStatus.CREATED,
    *,
    id_: str = "pi_sandbox_x",
    account_id: str = "acc_x",
    **changes: Any,
) -> PaymentIntent:
    base = PaymentIntent(
        id=id_,
        account_id=account_id,
        status=status,
        created_at=T0,
        updated_at=T0,
        expire_at=T0 + timedelta(days=30),
        amount=Money(1000, "GBP"),
        reference="r",
        setup_intent_id="si_sandbox_x",
    )
    return replace(base, **changes)
