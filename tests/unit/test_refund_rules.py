"""The refund and reversal rules (``domain.refund``, CONTRACT §5.5-5.6): what may be claimed given
the payment intent and its pending movements, and the refund's own transition table."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from cardkeep.domain import refund as rm
from cardkeep.domain.errors import (
    AmountExceedsRefundable,
    IllegalTransition,
    InvalidState,
    NotReversible,
    RefundInProgress,
    ValidationFailed,
)
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent, Status
from cardkeep.domain.refund import Kind, Pending, Refund
from tests.factories import T0, make_pi

TIMEOUT = timedelta(seconds=10)


def _pi(status: Status = Status.CAPTURED, refunded: int = 0) -> PaymentIntent:
    captured = 1000 if status is not Status.CREATED else 0
    return make_pi(status, captured_amount=captured, refunded_amount=refunded)


def _refund(amount: int, kind: Kind = Kind.REFUND, claimed: datetime = T0) -> Refund:
    return Refund(
        id=f"rfnd_{amount}_{kind.value}",
        account_id="acc_1",
        payment_intent_id="pi_1",
        kind=kind,
        status=rm.Status.PENDING,
        amount=Money(amount, "GBP"),
        created_at=T0,
        updated_at=T0,
        claimed_at=claimed,
    )


def _check(pi: PaymentIntent, amount: int, pending: list[Refund], now: datetime = T0) -> None:
    rm.check_refund(pi, amount, Pending(pending), now, TIMEOUT, wait=7)


def test_a_refund_up_to_what_is_left_is_allowed_and_reserved_amounts_count() -> None:
    _check(_pi(), 1000, [])
    _check(_pi(refunded=300), 700, [])
    _check(_pi(refunded=300), 400, [_refund(300)])
    with pytest.raises(AmountExceedsRefundable, match=r"\(400\)"):
        _check(_pi(refunded=300), 401, [_refund(300)])
    with pytest.raises(AmountExceedsRefundable):
        _check(_pi(), 1001, [])
    assert rm.refundable(_pi(refunded=100), Pending([_refund(200)])) == 700


@pytest.mark.parametrize("status", [Status.CREATED, Status.REFUNDED, Status.REVERSED])
def test_only_a_captured_payment_intent_is_refunded(status: Status) -> None:
    with pytest.raises(InvalidState, match=status.value):
        _check(_pi(status), 100, [])


def test_a_zero_amount_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        _check(_pi(), 0, [])


def test_an_unknown_outcome_or_a_pending_reversal_makes_everything_else_wait() -> None:
    young = _refund(100, claimed=T0)
    _check(_pi(), 100, [young], now=T0 + TIMEOUT - timedelta(microseconds=1))  # in flight: fine
    with pytest.raises(RefundInProgress) as caught:
        _check(_pi(), 100, [young], now=T0 + TIMEOUT)  # past the call's timeout: unknown
    assert caught.value.retry_after == 7
    with pytest.raises(RefundInProgress):
        _check(_pi(), 1, [_refund(1000, Kind.REVERSAL)])
    with pytest.raises(RefundInProgress):
        rm.check_reversal(_pi(), Pending([young]), T0 + TIMEOUT, TIMEOUT, 1)


def test_a_reversal_needs_a_capture_with_nothing_refunded_or_reserved() -> None:
    rm.check_reversal(_pi(), Pending([]), T0, TIMEOUT, 1)
    for pi, pending in (
        (_pi(refunded=1), []),
        (_pi(), [_refund(5)]),
        (_pi(Status.CREATED), []),
        (_pi(Status.REVERSED), []),
    ):
        with pytest.raises(NotReversible):
            rm.check_reversal(pi, Pending(pending), T0, TIMEOUT, 1)


def test_a_pending_refund_settles_once_into_one_of_three_outcomes() -> None:
    pending = _refund(100)
    later = T0 + timedelta(seconds=1)
    for event, status in (
        (rm.Event.SUCCEED, rm.Status.SUCCEEDED),
        (rm.Event.DECLINE, rm.Status.DECLINED),
        (rm.Event.FAIL, rm.Status.FAILED),
    ):
        settled = rm.transition(pending, event, later, "why")
        assert (settled.status, settled.message, settled.updated_at) == (status, "why", later)
        for again in rm.Event:
            with pytest.raises(IllegalTransition):
                rm.transition(settled, again, later, "again")
    assert set(rm.TRANSITIONS) == {(rm.Status.PENDING, e) for e in rm.Event}


def test_the_acquirer_key_is_one_per_refund() -> None:
    r = _refund(100)
    assert r.acquirer_key == f"refund:{r.id}"
    assert replace(r, kind=Kind.REVERSAL).acquirer_key == f"reversal:{r.id}"
