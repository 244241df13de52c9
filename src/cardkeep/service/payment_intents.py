"""Payment-intent use cases: create, read, cancel and charge (claim → Charger → settle).

The charge is the one place money moves. Its three steps:
1. claim: one write transaction moves PI Created→Charging and SI Authorized→ChargeHeld with
   conditional writes, or changes nothing;
2. the Charger is called with no transaction open, keyed by ``charge:<pi id>``;
3. settle: one write transaction applies the outcome to both, only if they are still claimed.
An unknown outcome leaves both claimed and answers 503; ``recover`` asks the acquirer again with
the same key and settles, so the charge is never sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.errors import (
    ChargeInProgress,
    InvalidState,
    NotFound,
    NotMerchantInitiated,
    SetupIntentNotUsable,
    Unavailable,
    ValidationFailed,
)
from cardkeep.domain.events import payment_intent_event
from cardkeep.domain.ids import Prefix
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import PaymentIntent
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.context import Context
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, ChargeResult, UnitOfWork
from cardkeep.service.setup_intents import SetupIntents

PI, SI = pim.Status, sim.Status
UNKNOWN_OUTCOME = "The charge outcome is not known yet; it will be settled automatically."


@dataclass(frozen=True)
class NewPaymentIntent:
    amount: Money
    reference: str
    setup_intent_id: str | None = None
    description: str | None = None
    expire_at: datetime | None = None
    extras: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChargeAnswer:
    """The ChargeResponse: Successful, Declined or Failed, with the acquirer's message."""

    payment_intent_id: str
    status: str
    message: str


_EVENT_TYPES = {
    ChargeResult.APPROVED: "Captured",
    ChargeResult.DECLINED: "Declined",
    ChargeResult.CARD_EXPIRED: "Declined",
    ChargeResult.FAILED: "Error",
}
_ANSWERS = {
    ChargeResult.APPROVED: "Successful",
    ChargeResult.DECLINED: "Declined",
    ChargeResult.CARD_EXPIRED: "Declined",
    ChargeResult.FAILED: "Failed",
}


class PaymentIntents:
    def __init__(self, ctx: Context, setup_intents: SetupIntents) -> None:
        self._ctx = ctx
        self._sis = setup_intents

    # -- create and read ----------------------------------------------------------------------

    def create(self, account: Account, cmd: NewPaymentIntent) -> PaymentIntent:
        ctx = self._ctx
        if cmd.amount.currency_code not in ctx.policy.currencies:
            raise ValidationFailed.one(
                "Amount.CurrencyCode", f"The currency {cmd.amount.currency_code} is not supported."
            )
        with ctx.storage.transaction(write=True) as uow:
            now = ctx.now(account)
            expire_at = cmd.expire_at or now + ctx.policy.payment_intent_ttl
            if expire_at <= now:
                raise ValidationFailed.one("ExpireAt", "The field ExpireAt must be in the future.")
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
            uow.payment_intents.add(pi)
            uow.outbox.record(payment_intent_event(ctx.event_id(), pi, created=True))
            uow.commit()
        return pi

    def _check_usable(
        self, uow: UnitOfWork, account: Account, cmd: NewPaymentIntent, now: datetime
    ) -> None:
        assert cmd.setup_intent_id is not None
        si = uow.setup_intents.get(account.id, cmd.setup_intent_id)
        if si is None:
            raise SetupIntentNotUsable(f"No setup intent with id {cmd.setup_intent_id}.")
        si = self._sis.apply_due(uow, si, now)
        if si.public_status is not SI.AUTHORIZED:
            uow.commit()  # keep an expiry that was just applied
            raise SetupIntentNotUsable(
                f"The setup intent is {si.public_status.value}; only an Authorized setup intent "
                "can be charged."
            )
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
        with self._ctx.storage.transaction(write=True) as uow:
            pi = self._load(uow, account, pi_id)
            uow.commit()
            return pi

    def _load(self, uow: UnitOfWork, account: Account, pi_id: str) -> PaymentIntent:
        """Read inside a write transaction and persist an expiry that is due."""
        pi = uow.payment_intents.get(account.id, pi_id)
        if pi is None:
            raise NotFound(f"No payment intent with id {pi_id}.")
        now = self._ctx.now(account)
        event = pim.due_event(pi, now)
        if event is not None:
            expired = pim.transition(pi, event, now)
            self._save(uow, pi, expired)
            pi = expired
        return pi

    def _save(self, uow: UnitOfWork, old: PaymentIntent, new: PaymentIntent) -> None:
        if not uow.payment_intents.update(new, expected=old.status):
            raise ChargeInProgress("The payment intent changed while this request ran; retry.")
        if new.public_status is not old.public_status:
            uow.outbox.record(payment_intent_event(self._ctx.event_id(), new, created=False))

    def cancel(self, account: Account, pi_id: str) -> PaymentIntent:
        with self._ctx.storage.transaction(write=True) as uow:
            pi = self._load(uow, account, pi_id)
            if pi.status is PI.CANCELED:
                uow.commit()
                return pi
            if pi.status is PI.CHARGING:
                raise ChargeInProgress("A charge of this payment intent is in progress; retry.")
            if pi.status is not PI.CREATED:
                raise InvalidState(
                    f"The payment intent is {pi.status.value}; only a Created payment intent "
                    "can be canceled."
                )
            canceled = pim.transition(pi, pim.Event.CANCEL, self._ctx.now(account))
            self._save(uow, pi, canceled)
            uow.commit()
        return canceled

    def expire_due(self, account: Account, pi_id: str) -> None:
        with self._ctx.storage.transaction(write=True) as uow:
            self._load(uow, account, pi_id)
            uow.commit()

    # -- charge -------------------------------------------------------------------------------

    def charge(self, account: Account, pi_id: str) -> ChargeAnswer:
        claimed = self._claim(account, pi_id)
        if isinstance(claimed, ChargeAnswer):
            return claimed
        pi, _, request = claimed
        try:
            outcome = self._ctx.charger.charge(request)
        except Exception as exc:  # the acquirer's state is unknown: never assume either way
            raise Unavailable(UNKNOWN_OUTCOME) from exc
        if outcome.result is ChargeResult.UNKNOWN:
            raise Unavailable(
                "The charge outcome is not known yet; it will be settled automatically."
            )
        return self._settle(account, pi.id, outcome)

    def _claim(
        self, account: Account, pi_id: str
    ) -> tuple[PaymentIntent, SetupIntent, ChargeRequest] | ChargeAnswer:
        with self._ctx.storage.transaction(write=True) as uow:
            pi = self._load(uow, account, pi_id)
            if pi.setup_intent_id is None:
                raise NotMerchantInitiated(
                    "The payment intent has no setupIntentId; only merchant-initiated payment "
                    "intents can be charged."
                )
            if pi.status is PI.CHARGING:
                raise ChargeInProgress("A charge of this payment intent is in progress; retry.")
            if pi.status is not PI.CREATED:
                uow.commit()
                raise InvalidState(
                    f"The payment intent is {pi.public_status.value}; only a Created payment "
                    "intent can be charged."
                )
            si = uow.setup_intents.get(account.id, pi.setup_intent_id)
            if si is None:
                raise SetupIntentNotUsable(f"No setup intent with id {pi.setup_intent_id}.")
            if si.status is SI.CHARGE_HELD:
                raise ChargeInProgress("A charge of this setup intent is in progress; retry.")
            now = self._ctx.now(account)
            si = self._sis.apply_due(uow, si, now)
            if si.status is SI.CARD_EXPIRED and si.card is not None:
                # Expired by the clock: never sent to the acquirer.
                answer = self._record_card_expired(uow, pi, si, now)
                uow.commit()
                return answer
            if si.status is not SI.AUTHORIZED or si.card is None or si.card.vault_token is None:
                uow.commit()
                raise SetupIntentNotUsable(
                    f"The setup intent is {si.public_status.value}; only an Authorized setup "
                    "intent can be charged."
                )
            sealed = uow.vault_records.get(si.card.vault_token)
            if sealed is None:
                raise SetupIntentNotUsable("The setup intent's card is no longer on file.")
            claimed_pi = pim.transition(pi, pim.Event.CLAIM, now, claimed_at=self._ctx.clock.now())
            held_si = sim.transition(si, sim.Event.HOLD_FOR_CHARGE, now)
            self._save(uow, pi, claimed_pi)
            self._sis.save(uow, si, held_si)
            uow.commit()
        request = ChargeRequest(
            mode=account.mode,
            card=sealed,
            expiry=si.card.expiry,
            amount=pi.amount,
            idempotency_key=pi.charge_key,
        )
        return claimed_pi, held_si, request

    def _record_card_expired(
        self, uow: UnitOfWork, pi: PaymentIntent, si: SetupIntent, now: datetime
    ) -> ChargeAnswer:
        attempt = self._attempt(ChargeOutcome(ChargeResult.CARD_EXPIRED, "Card expired"), si, now)
        noted = replace(pi, updated_at=now, payment_events=(*pi.payment_events, attempt))
        self._save(uow, pi, noted)
        return ChargeAnswer(pi.id, "Declined", "Card expired")

    def _attempt(self, outcome: ChargeOutcome, si: SetupIntent, now: datetime) -> AuthAttempt:
        return AuthAttempt(
            transaction_id=self._ctx.ids.uuid4(),
            at=now,
            event_type=_EVENT_TYPES[outcome.result],
            message=outcome.message,
            auth_code=outcome.auth_code,
            card=si.card,
        )

    def _settle(self, account: Account, pi_id: str, outcome: ChargeOutcome) -> ChargeAnswer:
        with self._ctx.storage.transaction(write=True) as uow:
            pi = uow.payment_intents.get(account.id, pi_id)
            assert pi is not None
            assert pi.setup_intent_id is not None
            si = uow.setup_intents.get(account.id, pi.setup_intent_id)
            assert si is not None
            if pi.status is not PI.CHARGING:
                # Someone (recovery) settled it first: answer from what is stored.
                return self._answer_from(pi)
            now = self._ctx.now(account)
            attempt = self._attempt(outcome, si, now)
            events = (*pi.payment_events, attempt)
            if outcome.result is ChargeResult.APPROVED:
                new_pi = pim.transition(
                    pi, pim.Event.CAPTURE, now, payment_events=events, payment_details=attempt
                )
                new_si = sim.transition(si, sim.Event.COMPLETE, now)
            else:
                new_pi = pim.transition(pi, pim.Event.RELEASE, now, payment_events=events)
                si_event = (
                    sim.Event.CARD_EXPIRED_AT_CHARGE
                    if outcome.result is ChargeResult.CARD_EXPIRED
                    else sim.Event.RELEASE
                )
                new_si = sim.transition(si, si_event, now)
            self._save(uow, pi, new_pi)
            self._sis.save(uow, si, new_si)
            uow.commit()
        return ChargeAnswer(pi.id, _ANSWERS[outcome.result], outcome.message)

    @staticmethod
    def _answer_from(pi: PaymentIntent) -> ChargeAnswer:
        last = pi.payment_events[-1] if pi.payment_events else None
        if pi.status is PI.CAPTURED:
            return ChargeAnswer(pi.id, "Successful", last.message if last else "DEPOSITED")
        if last is not None and last.event_type == "Error":
            return ChargeAnswer(pi.id, "Failed", last.message)
        return ChargeAnswer(pi.id, "Declined", last.message if last else "Declined")

    # -- recovery -----------------------------------------------------------------------------

    def recover(self) -> int:
        """Re-drive claims whose outcome is unknown: ask the acquirer with the same key, settle.

        Returns how many were settled. Claims younger than ``policy.recovery_after`` are left to
        the request that made them.
        """
        ctx = self._ctx
        settled = 0
        with ctx.storage.transaction(write=False) as uow:
            stuck = uow.payment_intents.charging(ctx.policy.sweep_batch)
            work = []
            for pi in stuck:
                account = uow.accounts.get(pi.account_id)
                si = uow.setup_intents.get(pi.account_id, pi.setup_intent_id or "")
                if account is None or si is None or si.card is None or not si.card.vault_token:
                    continue
                young = (
                    pi.claimed_at and ctx.clock.now() - pi.claimed_at < ctx.policy.recovery_after
                )
                if young:
                    continue
                sealed = uow.vault_records.get(si.card.vault_token)
                if sealed is None:
                    continue
                request = ChargeRequest(
                    account.mode, sealed, si.card.expiry, pi.amount, pi.charge_key
                )
                work.append((account, pi, request))
        for account, pi, request in work:
            try:
                outcome = ctx.charger.status(request)
            except Exception:  # noqa: S112 - still unknown; the next sweep asks again
                continue
            if outcome.result is ChargeResult.UNKNOWN:
                continue
            self._settle(account, pi.id, outcome)
            settled += 1
        return settled
