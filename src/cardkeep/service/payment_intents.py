"""Payment-intent use cases: create, read, cancel, and the charge — the one place money moves
today, as a ``money_movement.Movement``:

1. claim: one write transaction moves PI Created→Charging (attempt n+1) and SI Authorized→
   ChargeHeld with conditional writes, or changes nothing;
2. the Charger is called with no transaction open, keyed ``charge:<pi id>:<attempt>``, by vault
   token, with the network transaction id of the setup verification;
3. settle: one write transaction applies the outcome to both, only if that attempt is still
   claimed. An unknown outcome leaves both claimed and answers 503; ``recover`` re-sends the same
   attempt with the same key and settles, so the charge is never sent twice. The settle
   transaction also appends the charge's audit entry (``card.charge``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, assert_never

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AttemptType, AuthAttempt
from cardkeep.domain.audit import SYSTEM, Action, Outcome, account_actor, card_detail
from cardkeep.domain.errors import (
    ChargeInProgress,
    NotFound,
    RowLocked,
    SetupIntentNotUsable,
    Unavailable,
    ValidationFailed,
)
from cardkeep.domain.ids import Prefix
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service import money_movement
from cardkeep.service.audit import record
from cardkeep.service.changes import Changes
from cardkeep.service.context import Context
from cardkeep.service.idempotency import RecoveryPoint, kept
from cardkeep.service.money_movement import Claimed, Movement
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, ChargeResult, UnitOfWork

PI, SI = pim.Status, sim.Status
UNKNOWN_OUTCOME = "The charge outcome is not known yet; it will be settled automatically."
CARD_EXPIRED = "Card expired"
ANSWERED_LATE = "The acquirer answered after the timeout"


@dataclass(frozen=True)
class NewPaymentIntent:
    amount: Money
    reference: str
    setup_intent_id: str | None = None
    description: str | None = None
    expire_at: datetime | None = None
    extras: dict[str, Any] | None = None


class ChargeStatus(StrEnum):
    SUCCESSFUL = "Successful"
    DECLINED = "Declined"
    FAILED = "Failed"


@dataclass(frozen=True)
class ChargeAnswer:
    """The ChargeResponse: Successful, Declined or Failed, with the acquirer's message."""

    payment_intent_id: str
    status: ChargeStatus
    message: str


def settled_as(result: ChargeResult) -> tuple[AttemptType, ChargeStatus]:
    """What a settled charge outcome records in ``paymentEvents`` and answers as ChargeResponse."""
    match result:
        case ChargeResult.APPROVED:
            return AttemptType.CAPTURED, ChargeStatus.SUCCESSFUL
        case ChargeResult.DECLINED | ChargeResult.CARD_EXPIRED:
            return AttemptType.DECLINED, ChargeStatus.DECLINED
        case ChargeResult.FAILED:
            return AttemptType.ERROR, ChargeStatus.FAILED
        case ChargeResult.UNKNOWN:
            raise ValueError("an unknown outcome is never settled")
        case _:
            assert_never(result)


@dataclass(frozen=True)
class ChargeClaim:
    account: Account
    pi_id: str
    request: ChargeRequest
    actor: str = SYSTEM  # for the audit log: the account's request, or recovery (the system)


_AUDITED_AS = {
    ChargeResult.APPROVED: Outcome.APPROVED,
    ChargeResult.DECLINED: Outcome.DECLINED,
    ChargeResult.FAILED: Outcome.FAILED,
    ChargeResult.CARD_EXPIRED: Outcome.CARD_EXPIRED,
}


class Charge(Movement[ChargeClaim, ChargeOutcome, ChargeAnswer]):
    """The merchant-initiated charge of a setup intent's card, in full, at most once."""

    def __init__(self, ctx: Context, changes: Changes) -> None:
        self._ctx = ctx
        self._changes = changes

    def request(self, account: Account, pi: PaymentIntent, si: SetupIntent) -> ChargeRequest:
        assert si.card is not None
        assert si.card.vault_token is not None
        return ChargeRequest(
            mode=account.mode,
            account_id=account.id,
            token=si.card.vault_token,
            expiry=si.card.expiry,
            amount=pi.amount,
            idempotency_key=pi.charge_key,
            network_transaction_id=si.card.network_transaction_id,
            timeout=self._ctx.policy.acquirer_timeout.total_seconds(),
        )

    def claim(
        self, uow: UnitOfWork, account: Account, pi_id: str, request: str | None = None
    ) -> Claimed[ChargeClaim] | ChargeAnswer:
        """``request`` names the retried request (a token of its Idempotency-Key): a retry of
        the request whose attempt is settled gets that attempt's answer, never a new attempt."""
        now = self._ctx.now(account)
        changes = self._changes
        pi = uow.payment_intents.get_for_claim(account.id, pi_id)
        if pi is None:
            raise NotFound(f"No payment intent with id {pi_id}.")
        pi = changes.check_due(pi, now)
        retried = request is not None and pi.attempt_request == request
        if retried and pi.status is not PI.CHARGING and pi.payment_events:
            return answer_from(pi)  # the answer the first run of this request would have given
        policy, real_now = self._ctx.policy, self._ctx.clock.now()
        claim = pim.charge_claim(pi, wait=policy.recovery_wait(pi.claimed_at, real_now))
        assert pi.setup_intent_id is not None
        si = uow.setup_intents.get(account.id, pi.setup_intent_id)
        if si is None:
            raise SetupIntentNotUsable(f"No setup intent with id {pi.setup_intent_id}.")
        si = changes.check_due(si, now)
        if si.status is SI.CARD_EXPIRED and si.card is not None:
            # Expired by the clock: never sent to the acquirer; the payment intent says why.
            attempt = self._attempt(ChargeOutcome(ChargeResult.CARD_EXPIRED, CARD_EXPIRED), si, now)
            changes.save(uow, pi, pim.noted(pi, attempt, now))
            return ChargeAnswer(pi.id, ChargeStatus.DECLINED, CARD_EXPIRED)
        # Another payment intent of this setup intent is being charged: at most a full wait.
        hold = sim.charge_hold(si, wait=policy.recovery_wait(None, real_now))
        assert si.vault_token is not None
        if not uow.vault.holds(si.vault_token):
            raise SetupIntentNotUsable("The setup intent's card is no longer on file.")
        pending = AuthAttempt(
            self._ctx.ids.uuid4(), now, AttemptType.UNKNOWN, UNKNOWN_OUTCOME, None, si.card
        )
        claimed = pim.transition(
            pi, claim, now, claimed_at=real_now, pending_attempt=pending, attempt_request=request
        )
        changes.save(uow, pi, claimed)
        changes.save(uow, si, sim.transition(si, hold, now))
        sent = self.request(account, claimed, si)
        return Claimed(ChargeClaim(account, pi.id, sent, account_actor(account.id)))

    def send(self, claim: ChargeClaim) -> ChargeOutcome:
        late = ChargeOutcome(ChargeResult.UNKNOWN, ANSWERED_LATE)
        ctx = self._ctx
        return money_movement.within_timeout(
            ctx.clock, ctx.policy.acquirer_timeout, lambda: ctx.charger.charge(claim.request), late
        )

    def resend(self, claim: ChargeClaim) -> ChargeOutcome:
        return self._ctx.charger.status(claim.request)

    def known(self, outcome: ChargeOutcome) -> bool:
        return outcome.result is not ChargeResult.UNKNOWN

    def unknown(self, claim: ChargeClaim) -> Exception:
        wait = self._ctx.policy.recovery_wait(None, self._ctx.clock.now())
        return Unavailable(UNKNOWN_OUTCOME, wait)

    def settle(self, uow: UnitOfWork, claim: ChargeClaim, outcome: ChargeOutcome) -> ChargeAnswer:
        account = claim.account
        pi = uow.payment_intents.get(account.id, claim.pi_id)
        assert pi is not None
        assert pi.setup_intent_id is not None
        si = uow.setup_intents.get(account.id, pi.setup_intent_id)
        assert si is not None
        if pi.status is not PI.CHARGING or pi.charge_key != claim.request.idempotency_key:
            return answer_from(pi)  # settled meanwhile (by recovery): answer from what is stored
        now = self._ctx.now(account)
        attempt = self._attempt(outcome, si, now)
        if pi.pending_attempt is not None:  # the settled entry keeps the claim's transaction id
            attempt = replace(attempt, transaction_id=pi.pending_attempt.transaction_id)
        events = (*pi.payment_events, attempt)
        match outcome.result:
            case ChargeResult.APPROVED:
                new_pi = pim.transition(
                    pi, pim.Event.CAPTURE, now, payment_events=events, payment_details=attempt
                )
                new_si = sim.transition(si, sim.Event.COMPLETE, now)
            case ChargeResult.DECLINED | ChargeResult.FAILED:
                new_pi = pim.transition(pi, pim.Event.RELEASE, now, payment_events=events)
                new_si = sim.transition(si, sim.Event.RELEASE, now)
            case ChargeResult.CARD_EXPIRED:
                new_pi = pim.transition(pi, pim.Event.RELEASE, now, payment_events=events)
                new_si = sim.transition(si, sim.Event.CARD_EXPIRED_AT_CHARGE, now)
            case ChargeResult.UNKNOWN:
                raise ValueError("an unknown outcome is never settled")
            case _:
                assert_never(outcome.result)
        self._changes.save(uow, pi, new_pi)
        self._changes.save(uow, si, new_si)
        self._changes.forget_card(uow, si, new_si)  # a used or expired card leaves the vault
        detail = card_detail(si.card) | {"setup_intent": si.id, "attempt": str(pi.charge_attempts)}
        record(
            self._ctx,
            uow,
            actor=claim.actor,
            action=Action.CARD_CHARGE,
            subject=pi.id,
            outcome=_AUDITED_AS[outcome.result],
            account_id=account.id,
            detail=detail | {"amount": f"{pi.amount.value} {pi.amount.currency_code}"},
        )
        return ChargeAnswer(pi.id, settled_as(outcome.result)[1], outcome.message)

    def _attempt(self, outcome: ChargeOutcome, si: SetupIntent, now: datetime) -> AuthAttempt:
        return AuthAttempt(
            transaction_id=self._ctx.ids.uuid4(),
            at=now,
            event_type=settled_as(outcome.result)[0],
            message=outcome.message,
            auth_code=outcome.auth_code,
            card=si.card,
        )


def answer_from(pi: PaymentIntent) -> ChargeAnswer:
    """The ChargeResponse of an attempt that is already settled, from its ``paymentEvents``."""
    last = pi.payment_events[-1] if pi.payment_events else None
    if pi.status is PI.CAPTURED:
        return ChargeAnswer(pi.id, ChargeStatus.SUCCESSFUL, last.message if last else "DEPOSITED")
    if last is not None and last.event_type is AttemptType.ERROR:
        return ChargeAnswer(pi.id, ChargeStatus.FAILED, last.message)
    return ChargeAnswer(pi.id, ChargeStatus.DECLINED, last.message if last else "Declined")


class PaymentIntents:
    def __init__(self, ctx: Context, changes: Changes) -> None:
        self._ctx = ctx
        self._changes = changes
        self._charge = Charge(ctx, changes)

    # -- create and read ----------------------------------------------------------------------

    def create(
        self,
        account: Account,
        cmd: NewPaymentIntent,
        point: RecoveryPoint[PaymentIntent] | None = None,
    ) -> PaymentIntent:
        ctx = self._ctx
        if cmd.amount.currency_code not in ctx.policy.currencies:
            raise ValidationFailed.one(
                "Amount.CurrencyCode", f"The currency {cmd.amount.currency_code} is not supported."
            )

        def attempt(uow: UnitOfWork) -> PaymentIntent:
            now = ctx.now(account)
            expire_at = cmd.expire_at or now + ctx.policy.payment_intent_ttl
            if expire_at <= now:
                raise ValidationFailed.one("ExpireAt", "The field ExpireAt must be in the future.")
            if expire_at > now + ctx.policy.payment_intent_max_ttl:
                raise ValidationFailed.one(
                    "ExpireAt", "The field ExpireAt must be at most 365 days in the future."
                )
            if cmd.setup_intent_id is not None:
                self._check_usable(uow, account, cmd, now)
            pi = PaymentIntent(
                id=ctx.ids.new(Prefix.PAYMENT_INTENT, account.mode.value),
                account_id=account.id,
                status=PI.CREATED,
                created_at=now,
                updated_at=now,
                expire_at=expire_at,
                amount=cmd.amount,
                reference=cmd.reference,
                setup_intent_id=cmd.setup_intent_id,
                description=cmd.description,
                extras=dict(cmd.extras or {}),
            )
            self._changes.insert(uow, pi)
            return kept(point, uow, pi)

        return self._changes.decide(attempt)

    def _check_usable(
        self, uow: UnitOfWork, account: Account, cmd: NewPaymentIntent, now: datetime
    ) -> None:
        assert cmd.setup_intent_id is not None
        si = uow.setup_intents.get(account.id, cmd.setup_intent_id)
        if si is None:
            raise SetupIntentNotUsable(f"No setup intent with id {cmd.setup_intent_id}.")
        sim.require_usable(self._changes.check_due(si, now))
        wanted = si.intended_amount
        if wanted is not None and wanted.currency_code != cmd.amount.currency_code:
            raise ValidationFailed.one(
                "Amount.CurrencyCode",
                f"The currency must be {wanted.currency_code}, "
                "the currency of the setup intent's intendedAmount.",
            )

    def get(self, account: Account, pi_id: str) -> PaymentIntent:
        with self._ctx.storage.transaction(write=False) as uow:
            pi = uow.payment_intents.get(account.id, pi_id)
        if pi is None:
            raise NotFound(f"No payment intent with id {pi_id}.")
        if pim.due_event(pi, self._ctx.now(account)) is None:
            return pi
        return self._changes.decide(lambda uow: self._load(uow, account, pi_id))

    def _load(self, uow: UnitOfWork, account: Account, pi_id: str) -> PaymentIntent:
        """Read inside a decision; a due expiry is committed first (``DueFirst``)."""
        pi = uow.payment_intents.get(account.id, pi_id)
        if pi is None:
            raise NotFound(f"No payment intent with id {pi_id}.")
        return self._changes.check_due(pi, self._ctx.now(account))

    def cancel(self, account: Account, pi_id: str) -> PaymentIntent:
        def attempt(uow: UnitOfWork) -> PaymentIntent:
            pi = self._load(uow, account, pi_id)
            wait = self._ctx.policy.recovery_wait(pi.claimed_at, self._ctx.clock.now())
            event = pim.cancellation(pi, wait=wait)
            if event is None:
                return pi  # already Canceled: answered unchanged
            canceled = pim.transition(pi, event, self._ctx.now(account))
            self._changes.save(uow, pi, canceled)
            return canceled

        return self._changes.decide(attempt)

    def expire_due(self, account: Account, pi_id: str) -> None:
        self._changes.decide(lambda uow: self._load(uow, account, pi_id))

    # -- charge -------------------------------------------------------------------------------

    def charge(self, account: Account, pi_id: str, request: str | None = None) -> ChargeAnswer:
        """Charge the payment intent; ``request`` names the request by its Idempotency-Key."""
        self._refuse_early(account, pi_id, request)
        try:
            return money_movement.move(
                self._changes,
                self._ctx.storage,
                self._charge,
                lambda uow: self._charge.claim(uow, account, pi_id, request),
            )
        except RowLocked as exc:  # another request is claiming it right now
            wait = self._ctx.policy.recovery_wait(None, self._ctx.clock.now())
            raise ChargeInProgress(
                "A charge of this payment intent is in progress; retry.", wait
            ) from exc

    def _recovery_due(self, pi: PaymentIntent, account: Account | None, now: datetime) -> bool:
        """Recovery asks about a claim once ``recovery_after`` has passed on the account clock (a
        sandbox test moves it forward), and never before the acquirer call's hard timeout has
        passed in real time (the first call may still be in flight until then)."""
        policy = self._ctx.policy
        if pi.claimed_at is None:
            return True  # a claim from before claim times were kept: long past any timeout
        if now - pi.claimed_at < policy.acquirer_timeout:
            return False
        if account is None or pi.pending_attempt is None:
            return now - pi.claimed_at >= policy.recovery_after
        return account.now(now) - pi.pending_attempt.at >= policy.recovery_after

    def _refuse_early(self, account: Account, pi_id: str, request: str | None) -> None:
        """A charge that the rules refuse as things stand is refused from a read, without
        taking a write lock (a crowd of retries of a charge in flight costs little). Whatever
        this lets through is decided again by the claim, under its conditional writes."""
        with self._ctx.storage.transaction(write=False) as uow:
            pi = uow.payment_intents.get(account.id, pi_id)
            si = uow.setup_intents.get(account.id, pi.setup_intent_id or "") if pi else None
        if pi is None or (request is not None and pi.attempt_request == request):
            return  # not found, or a retried request: the claim answers
        now = self._ctx.now(account)
        if pim.due_event(pi, now) is not None:
            return  # the claim commits the expiry first
        wait = self._ctx.policy.recovery_wait(pi.claimed_at, self._ctx.clock.now())
        pim.charge_claim(pi, wait=wait)
        if si is not None and si.status is SI.CHARGE_HELD:
            sim.charge_hold(si, wait=self._ctx.policy.recovery_wait(None, self._ctx.clock.now()))

    def recover(self) -> int:
        """Re-send claims whose outcome is unknown with the same key, and settle them.

        Returns how many were settled. Claims younger than ``policy.recovery_after`` (real time,
        longer than the acquirer call's timeout) are left to the request that made them. Each
        claim is leased to one worker for ``recovery_after`` before it is re-sent, with no
        transaction open during the call.
        """
        ctx = self._ctx
        now = ctx.clock.now()
        claims: list[ChargeClaim] = []
        with ctx.storage.transaction(write=True) as uow:
            accounts = {a.id: a for a in uow.accounts.list()}

            def due(pi: PaymentIntent) -> bool:
                return self._recovery_due(pi, accounts.get(pi.account_id), now)

            stuck = uow.payment_intents.lease_stuck_charges(
                due, now, now + ctx.policy.recovery_after, ctx.policy.sweep_batch
            )
            uow.commit()
        with ctx.storage.transaction(write=False) as uow:
            for pi in stuck:
                account = uow.accounts.get(pi.account_id)
                si = uow.setup_intents.get(pi.account_id, pi.setup_intent_id or "")
                if account is None or si is None or si.vault_token is None:
                    continue  # nothing to re-send with; left for an operator, never guessed
                request = self._charge.request(account, pi, si)
                claims.append(ChargeClaim(account, pi.id, request))
        return money_movement.recover(ctx.storage, self._charge, claims)
