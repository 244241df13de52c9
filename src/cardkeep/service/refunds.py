"""Refund and reversal use cases (CONTRACT §5.5-5.6): each a ``money_movement.Movement``.

1. claim: one write transaction locks the payment intent (waiting for another claim of it),
   checks the rules (``domain.refund``: Captured; the amount within captured - refunded -
   reserved; a reversal only with nothing refunded or reserved; nothing else while an outcome is
   unknown) and inserts the refund ``Pending``, which reserves its amount;
2. the acquirer is called with no transaction open, keyed ``refund:<id>`` / ``reversal:<id>``,
   referencing the captured charge by its acquirer key, never the card;
3. settle: one write transaction moves the refund out of ``Pending`` (only if still pending) and,
   when it succeeded, adds it to the payment intent's ``refundedAmount`` (``Refunded`` once it
   reaches the capture) or reverses it, with a ``paymentEvents`` entry;
4. an unknown outcome leaves it ``Pending`` (503); ``recover`` re-sends it with the same key
   and settles it, so money moves once. A retry of the request (the same idempotency key) finds
   its refund again: ``refund_in_progress`` while pending, the settled answer after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import refund as rm
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AttemptType, AuthAttempt
from cardkeep.domain.errors import (
    IdempotencyKeyMismatch,
    NotFound,
    RefundDeclined,
    RefundInProgress,
    RowLocked,
    Unavailable,
)
from cardkeep.domain.ids import Prefix
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.refund import Kind, Pending, Refund
from cardkeep.service import money_movement
from cardkeep.service.changes import Changes
from cardkeep.service.context import Context
from cardkeep.service.money_movement import Claimed, Movement
from cardkeep.service.payment_intents import ANSWERED_LATE
from cardkeep.service.ports import RefundOutcome, RefundRequest, RefundResult, UnitOfWork

RS = rm.Status
UNKNOWN_OUTCOME = "The {kind} outcome is not known yet; it will be settled automatically."


@dataclass(frozen=True)
class NewRefund:
    amount: int
    reason: str | None = None
    notes: str | None = None
    previous_transaction_id: str | None = None


@dataclass(frozen=True)
class RefundClaim:
    account: Account
    refund: Refund
    request: RefundRequest


class Movements(Movement[RefundClaim, RefundOutcome, Refund]):
    """A refund or reversal of a captured charge, at most once."""

    def __init__(self, ctx: Context, changes: Changes) -> None:
        self._ctx = ctx
        self._changes = changes

    def request(self, account: Account, pi: PaymentIntent, refund: Refund) -> RefundRequest:
        return RefundRequest(
            mode=account.mode,
            account_id=account.id,
            kind=refund.kind.value,
            amount=refund.amount,
            idempotency_key=refund.acquirer_key,
            capture_key=pi.charge_key,  # the attempt that captured: the last one
            timeout=self._ctx.policy.acquirer_timeout.total_seconds(),
        )

    def claim(
        self,
        uow: UnitOfWork,
        account: Account,
        pi_id: str,
        kind: Kind,
        new: NewRefund | None,
        request: str | None,
    ) -> Claimed[RefundClaim] | Refund:
        policy, real_now = self._ctx.policy, self._ctx.clock.now()
        pi = uow.payment_intents.get_for_update(account.id, pi_id)
        if pi is None:
            raise NotFound(f"No payment intent with id {pi_id}.")
        if request is not None:
            earlier = uow.refunds.by_request(account.id, pi_id, request)
            if earlier is not None:
                if not _same_request(earlier, kind, new):
                    # The key's first answer was not kept (its outcome was unknown), so it runs
                    # again: with another body it is another request, never answered from this.
                    raise IdempotencyKeyMismatch(
                        "This idempotency key was used with a different request; use a new key."
                    )
                return earlier  # a retry: the caller answers from it
        pending = Pending(uow.refunds.pending(account.id, pi_id))
        blocking = pending.blocking(real_now, policy.acquirer_timeout)
        wait = policy.recovery_wait(blocking.claimed_at if blocking else None, real_now)
        if kind is Kind.REFUND:
            assert new is not None
            rm.check_refund(pi, new.amount, pending, real_now, policy.acquirer_timeout, wait)
            amount = new.amount
        else:
            rm.check_reversal(pi, pending, real_now, policy.acquirer_timeout, wait)
            amount = pi.captured_amount
        now = self._ctx.now(account)
        prefix = Prefix.REFUND if kind is Kind.REFUND else Prefix.REVERSAL
        refund = Refund(
            id=self._ctx.ids.new(prefix),
            account_id=account.id,
            payment_intent_id=pi.id,
            kind=kind,
            status=RS.PENDING,
            amount=Money(amount, pi.amount.currency_code),
            created_at=now,
            updated_at=now,
            claimed_at=real_now,
            reason=new.reason if new else None,
            notes=new.notes if new else None,
            previous_transaction_id=new.previous_transaction_id if new else None,
            request=request,
        )
        uow.refunds.add(refund)
        self._changes.save(uow, pi, pi)  # still Captured: a conditional write of the claim
        return Claimed(RefundClaim(account, refund, self.request(account, pi, refund)))

    def send(self, claim: RefundClaim) -> RefundOutcome:
        late = RefundOutcome(RefundResult.UNKNOWN, ANSWERED_LATE)
        ctx = self._ctx
        return money_movement.within_timeout(
            ctx.clock, ctx.policy.acquirer_timeout, lambda: ctx.charger.refund(claim.request), late
        )

    def resend(self, claim: RefundClaim) -> RefundOutcome:
        return self._ctx.charger.refund_status(claim.request)

    def known(self, outcome: RefundOutcome) -> bool:
        return outcome.result is not RefundResult.UNKNOWN

    def unknown(self, claim: RefundClaim) -> Exception:
        wait = self._ctx.policy.recovery_wait(None, self._ctx.clock.now())
        return Unavailable(UNKNOWN_OUTCOME.format(kind=claim.refund.kind.value), wait)

    def settle(self, uow: UnitOfWork, claim: RefundClaim, outcome: RefundOutcome) -> Refund:
        account, claimed = claim.account, claim.refund
        current = uow.refunds.get(account.id, claimed.id)
        assert current is not None  # a refund is never deleted
        if current.status is not RS.PENDING:
            return current  # settled meanwhile (by recovery or the request): as stored
        now = self._ctx.now(account)
        match outcome.result:
            case RefundResult.APPROVED:
                settled = rm.transition(current, rm.Event.SUCCEED, now, outcome.message)
            case RefundResult.DECLINED:
                settled = rm.transition(current, rm.Event.DECLINE, now, outcome.message)
            case RefundResult.FAILED:
                settled = rm.transition(current, rm.Event.FAIL, now, outcome.message)
            case RefundResult.UNKNOWN:
                raise ValueError("an unknown outcome is never settled")
        if not uow.refunds.update(settled, expected=RS.PENDING):
            stored = uow.refunds.get(account.id, claimed.id)
            assert stored is not None
            return stored
        if settled.status is RS.SUCCEEDED:
            pi = uow.payment_intents.get_for_update(account.id, current.payment_intent_id)
            assert pi is not None
            self._changes.save(uow, pi, _after(pi, settled, now, self._ctx.ids.uuid4()))
        return settled


def _same_request(earlier: Refund, kind: Kind, new: NewRefund | None) -> bool:
    """Whether ``earlier`` was claimed by the same request: the same kind, and for a refund the
    same amount, reason, notes and previous transaction."""
    if earlier.kind is not kind:
        return False
    if new is None:
        return True
    return (
        earlier.amount.value,
        earlier.reason,
        earlier.notes,
        earlier.previous_transaction_id,
    ) == (new.amount, new.reason, new.notes, new.previous_transaction_id)


def _after(pi: PaymentIntent, refund: Refund, now: datetime, entry_id: str) -> PaymentIntent:
    """The payment intent once ``refund`` has succeeded: refunded (in part or in full) or
    reversed, with its ``paymentEvents`` entry."""
    card = pi.payment_details.card if pi.payment_details is not None else None
    if refund.kind is Kind.REVERSAL:
        entry = AuthAttempt(entry_id, now, AttemptType.REVERSED, refund.message or "", None, card)
        events = (*pi.payment_events, entry)
        return pim.transition(pi, pim.Event.REVERSE, now, payment_events=events)
    entry = AuthAttempt(entry_id, now, AttemptType.REFUNDED, refund.message or "", None, card)
    refunded = pi.refunded_amount + refund.amount.value
    event = pim.Event.REFUND_IN_FULL if refunded >= pi.captured_amount else pim.Event.REFUND
    events = (*pi.payment_events, entry)
    return pim.transition(pi, event, now, refunded_amount=refunded, payment_events=events)


class Refunds:
    def __init__(self, ctx: Context, changes: Changes) -> None:
        self._ctx = ctx
        self._changes = changes
        self._movements = Movements(ctx, changes)

    def refund(
        self, account: Account, pi_id: str, new: NewRefund, request: str | None = None
    ) -> Refund:
        """``POST /payment-intents/{id}/refunds``: the succeeded Refund, or the refusal."""
        return self._move(account, pi_id, Kind.REFUND, new, request)

    def reverse(self, account: Account, pi_id: str, request: str | None = None) -> Refund:
        """``POST /payment-intents/{id}/reversal``: the succeeded reversal, or the refusal."""
        return self._move(account, pi_id, Kind.REVERSAL, None, request)

    def get(self, account: Account, refund_id: str) -> Refund:
        """``GET /payment-intents/refunds/{id}``: a refund that succeeded (a declined, failed or
        unsettled one was never answered with a Refund)."""
        with self._ctx.storage.transaction(write=False) as uow:
            refund = uow.refunds.get(account.id, refund_id)
        if refund is None or refund.kind is not Kind.REFUND or refund.status is not RS.SUCCEEDED:
            raise NotFound(f"No refund with id {refund_id}.")
        return refund

    def _move(
        self, account: Account, pi_id: str, kind: Kind, new: NewRefund | None, request: str | None
    ) -> Refund:
        movements = self._movements
        try:
            result = money_movement.move(
                self._changes,
                self._ctx.storage,
                movements,
                lambda uow: movements.claim(uow, account, pi_id, kind, new, request),
            )
        except RowLocked as exc:  # the payment intent is locked beyond the lock timeout
            raise RefundInProgress(
                f"A {kind.value} of this payment intent is in progress; retry.", 1
            ) from exc
        return self._answer(result)

    def _answer(self, refund: Refund) -> Refund:
        """The settled refund as the caller gets it: the Refund, or its refusal."""
        kind = refund.kind.value
        match refund.status:
            case RS.SUCCEEDED:
                return refund
            case RS.DECLINED:
                raise RefundDeclined(f"The acquirer declined the {kind}: {refund.message}.")
            case RS.FAILED:
                wait = self._ctx.policy.recovery_wait(None, self._ctx.clock.now())
                raise Unavailable(
                    f"The {kind} failed at the acquirer ({refund.message}); nothing was refunded. "
                    "Retry.",
                    wait,
                )
            case RS.PENDING:
                wait = self._ctx.policy.recovery_wait(refund.claimed_at, self._ctx.clock.now())
                raise RefundInProgress(UNKNOWN_OUTCOME.format(kind=kind), wait)

    def _due(self, refund: Refund, account: Account | None, real_now: datetime) -> bool:
        """Recovery asks once the acquirer call's hard timeout has passed in real time and
        ``recovery_after`` on the account clock (a sandbox test moves it forward)."""
        policy = self._ctx.policy
        if real_now - refund.claimed_at < policy.acquirer_timeout:
            return False
        if account is None:
            return real_now - refund.claimed_at >= policy.recovery_after
        return account.now(real_now) - refund.created_at >= policy.recovery_after

    def recover(self) -> int:
        """Re-send refunds and reversals whose outcome is unknown with the same key, and settle
        them; how many were settled. Each is leased to one worker for ``recovery_after``."""
        ctx = self._ctx
        now = ctx.clock.now()
        with ctx.storage.transaction(write=True) as uow:
            accounts = {a.id: a for a in uow.accounts.list()}

            def due(refund: Refund) -> bool:
                return self._due(refund, accounts.get(refund.account_id), now)

            stuck = uow.refunds.lease_pending(
                due, now, now + ctx.policy.recovery_after, ctx.policy.sweep_batch
            )
            uow.commit()
        claims: list[RefundClaim] = []
        with ctx.storage.transaction(write=False) as uow:
            for refund in stuck:
                account = accounts.get(refund.account_id)
                pi = uow.payment_intents.get(refund.account_id, refund.payment_intent_id)
                if account is None or pi is None:
                    continue  # nothing to re-send with; left for an operator, never guessed
                request = self._movements.request(account, pi, refund)
                claims.append(RefundClaim(account, refund, request))
        return money_movement.recover(ctx.storage, self._movements, claims)
