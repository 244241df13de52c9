"""Setup-intent use cases: create (with or without a card), read, cancel/close, client secrets.

Expiry is applied whenever an intent is read or used, from the account's clock, and persisted at
once with its event; the sweeper does the same for intents nobody reads.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cardkeep.domain import setup_intent as sim
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.errors import (
    ChargeInProgress,
    InvalidState,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from cardkeep.domain.events import setup_intent_event
from cardkeep.domain.ids import Prefix
from cardkeep.domain.money import Money
from cardkeep.domain.setup_intent import ClientSecret, SetupIntent, Status
from cardkeep.service.context import Context, secret_hash
from cardkeep.service.ports import SealedCard, UnitOfWork


@dataclass(frozen=True)
class NewSetupIntent:
    reference: str
    terms: str
    mit_type: str
    description: str | None = None
    intended_amount: Money | None = None
    expire_at: datetime | None = None
    extras: dict[str, Any] | None = None


@dataclass(frozen=True)
class CardApproved:
    card: CardOnFile
    sealed: SealedCard
    attempt: AuthAttempt


@dataclass(frozen=True)
class CardDeclined:
    attempt: AuthAttempt


@dataclass(frozen=True)
class CardPastExpiry:
    attempt: AuthAttempt


CardOutcome = CardApproved | CardDeclined | CardPastExpiry


class SetupIntents:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    # -- create -------------------------------------------------------------------------------

    def create(self, account: Account, cmd: NewSetupIntent) -> tuple[SetupIntent, str]:
        """A Created intent and its one-time client session secret (returned in plaintext once)."""
        now = self._ctx.now(account)
        si = self._new(account, cmd, now)
        si, secret = self._with_new_secret(si, now)
        self._insert(si)
        return si, secret

    def prepare(self, account: Account, cmd: NewSetupIntent) -> SetupIntent:
        """Validate a create request against the account's clock and policy; nothing is stored.

        The PCI create calls this before it sends anything to the acquirer."""
        return self._new(account, cmd, self._ctx.now(account))

    def create_with_card(self, draft: SetupIntent, outcome: CardOutcome) -> SetupIntent:
        """The PCI create: one intent, directly Authorized, Created (declined) or CardExpired."""
        events = (outcome.attempt,)
        if isinstance(outcome, CardApproved):
            si = replace(draft, status=Status.AUTHORIZED, card=outcome.card)
            sealed: SealedCard | None = outcome.sealed
        else:
            status = Status.CARD_EXPIRED if isinstance(outcome, CardPastExpiry) else Status.CREATED
            si = replace(draft, status=status)
            sealed = None
        si = replace(si, payment_details=outcome.attempt, setup_events=events)
        self._insert(si, sealed)
        return si

    def _new(self, account: Account, cmd: NewSetupIntent, now: datetime) -> SetupIntent:
        self._check_amount(cmd.intended_amount)
        expire_at = self._expiry(cmd.expire_at, now)
        return SetupIntent(
            id=self._ctx.ids.new(Prefix.SETUP_INTENT, account.mode.value),
            account_id=account.id,
            status=Status.CREATED,
            created_at=now,
            updated_at=now,
            expire_at=expire_at,
            reference=cmd.reference,
            terms=cmd.terms,
            mit_type=cmd.mit_type,
            description=cmd.description,
            intended_amount=cmd.intended_amount,
            extras=dict(cmd.extras or {}),
        )

    def _check_amount(self, amount: Money | None) -> None:
        if amount is not None and amount.currency_code not in self._ctx.policy.currencies:
            raise ValidationFailed.one(
                "IntendedAmount.CurrencyCode",
                f"The currency {amount.currency_code} is not supported.",
            )

    def _expiry(self, wanted: datetime | None, now: datetime) -> datetime:
        policy = self._ctx.policy
        if wanted is None:
            return now + policy.setup_intent_ttl
        if wanted <= now:
            raise ValidationFailed.one("ExpireAt", "The field ExpireAt must be in the future.")
        if wanted > now + policy.setup_intent_max_ttl:
            raise ValidationFailed.one(
                "ExpireAt", "The field ExpireAt must be at most 365 days in the future."
            )
        return wanted

    def _insert(self, si: SetupIntent, sealed: SealedCard | None = None) -> None:
        with self._ctx.storage.transaction(write=True) as uow:
            if sealed is not None:
                uow.vault_records.put(sealed)
            uow.setup_intents.add(si)
            uow.outbox.record(setup_intent_event(self._ctx.event_id(), si, created=True))
            uow.commit()

    # -- read ---------------------------------------------------------------------------------

    def get(self, account: Account, si_id: str) -> SetupIntent:
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.get(account.id, si_id)
        if si is None:
            raise NotFound(f"No setup intent with id {si_id}.")
        if sim.due_event(si, self._ctx.now(account)) is None:
            return si
        return self.change(account, si_id, lambda current, _now: current)

    # -- change -------------------------------------------------------------------------------

    def change(
        self,
        account: Account,
        si_id: str,
        decide: Callable[[SetupIntent, datetime], SetupIntent],
    ) -> SetupIntent:
        """Apply due expiry, then ``decide(si, now) -> new si``, as one conditional write.

        ``decide`` returns the intent unchanged for an idempotent no-op.
        """
        with self._ctx.storage.transaction(write=True) as uow:
            current = uow.setup_intents.get(account.id, si_id)
            if current is None:
                raise NotFound(f"No setup intent with id {si_id}.")
            now = self._ctx.now(account)
            current = self.apply_due(uow, current, now)
            changed = decide(current, now)
            if changed is not current:
                self.save(uow, current, changed)
            uow.commit()
            return changed

    def apply_due(self, uow: UnitOfWork, si: SetupIntent, now: datetime) -> SetupIntent:
        """Persist a time-driven transition that the account clock says is due (inside ``uow``)."""
        event = sim.due_event(si, now)
        if event is None:
            return si
        expired = sim.transition(si, event, now)
        self.save(uow, si, expired)
        return expired

    def save(self, uow: UnitOfWork, old: SetupIntent, new: SetupIntent) -> None:
        """Conditional write of a transition plus its event; a lost race raises InvalidState."""
        if not uow.setup_intents.update(new, expected=old.status):
            raise ChargeInProgress("The setup intent changed while this request ran; retry.")
        if new.public_status is not old.public_status:
            token = old.card.vault_token if old.card is not None else None
            if token and (new.card is None or new.card.vault_token is None):
                uow.vault_records.delete(token)
            uow.outbox.record(setup_intent_event(self._ctx.event_id(), new, created=False))

    def delete(self, account: Account, si_id: str, include_authorized: bool) -> SetupIntent:
        def decide(si: SetupIntent, now: datetime) -> SetupIntent:
            if si.status in (Status.CANCELED, Status.CLOSED):
                return si
            if si.status is Status.CHARGE_HELD:
                raise ChargeInProgress("A charge of this setup intent is in progress; retry.")
            if si.status is Status.CREATED:
                return sim.transition(si, sim.Event.CANCEL, now, secret=None)
            if si.status is Status.AUTHORIZED:
                if not include_authorized:
                    raise InvalidState(
                        "The setup intent is Authorized; pass includeAuthorized=true to close it."
                    )
                # The card leaves the vault in this same transaction (``save``).
                return sim.transition(si, sim.Event.CLOSE, now, card=_forget_token(si.card))
            raise InvalidState(
                f"The setup intent is {si.status.value}; only Created or Authorized setup "
                "intents can be canceled or closed."
            )

        return self.change(account, si_id, decide)

    # -- client session secrets ---------------------------------------------------------------

    def _with_new_secret(self, si: SetupIntent, now: datetime) -> tuple[SetupIntent, str]:
        secret = self._ctx.ids.secret()
        expires = (now + self._ctx.policy.client_secret_ttl).replace(microsecond=0)
        record = ClientSecret(hash=secret_hash(secret), issued_at=now, expires_at=expires)
        return replace(si, secret=record), secret

    def refresh_secret(self, account: Account, si_id: str) -> tuple[SetupIntent, str]:
        issued: list[str] = []

        def decide(si: SetupIntent, now: datetime) -> SetupIntent:
            if si.status is not Status.CREATED:
                raise InvalidState(
                    f"The setup intent is {si.public_status.value}; only a Created setup intent "
                    "has a client session secret."
                )
            fresh, secret = self._with_new_secret(si, now)
            issued.append(secret)
            return replace(fresh, updated_at=now)

        si = self.change(account, si_id, decide)
        return si, issued[0]

    def authenticate_public(self, si_id: str, secret: str, account: Account | None) -> SetupIntent:
        """``GET /setup-intents/public/{id}``: the client secret (valid, not consumed), or the
        owning account's key."""
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.find(si_id)
            owner = uow.accounts.get(si.account_id) if si is not None else None
        if si is None or owner is None:
            raise NotFound(f"No setup intent with id {si_id}.")
        if account is not None:
            if account.id != owner.id:
                raise NotFound(f"No setup intent with id {si_id}.")
            return self.get(account, si_id)
        self._check_secret(si, secret, self._ctx.now(owner), allow_expired=False)
        return self.get(owner, si_id)

    def refresh_public_secret(self, si_id: str, secret: str) -> tuple[SetupIntent, str]:
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.find(si_id)
            owner = uow.accounts.get(si.account_id) if si is not None else None
        if si is None or owner is None:
            raise NotFound(f"No setup intent with id {si_id}.")
        self._check_secret(si, secret, self._ctx.now(owner), allow_expired=True)
        issued: list[str] = []

        def decide(current: SetupIntent, now: datetime) -> SetupIntent:
            self._check_secret(current, secret, now, allow_expired=True)
            if current.status is not Status.CREATED:
                raise InvalidState(f"The setup intent is {current.public_status.value}.")
            fresh, new_secret = self._with_new_secret(current, now)
            issued.append(new_secret)
            return replace(fresh, updated_at=now)

        return self.change(owner, si_id, decide), issued[0]

    def _check_secret(
        self, si: SetupIntent, secret: str, now: datetime, *, allow_expired: bool
    ) -> None:
        record = si.secret
        if record is None or not hmac.compare_digest(record.hash, secret_hash(secret)):
            raise Unauthorized(
                "The client session secret is not valid.", "client_session_secret_invalid"
            )
        if record.used:
            raise Unauthorized(
                "The client session secret has been used.", "client_session_secret_used"
            )
        if allow_expired:
            if now >= record.issued_at + self._ctx.policy.client_secret_refresh_window:
                raise Unauthorized(
                    "The client session secret is too old to refresh.",
                    "client_session_secret_expired",
                )
        elif now >= record.expires_at:
            raise Unauthorized(
                "The client session secret has expired.", "client_session_secret_expired"
            )


def _forget_token(card: CardOnFile | None) -> CardOnFile | None:
    return None if card is None else replace(card, vault_token=None)
