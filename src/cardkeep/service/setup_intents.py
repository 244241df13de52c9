"""Setup-intent use cases: create (with or without a card), read, cancel/close, client secrets.

Every status change fires an event of ``domain.setup_intent``'s table through ``transition`` and
is written through ``Changes``. Expiry is applied whenever an intent is read or used, from the
account's clock, and committed in its own transaction; the sweeper does the same for intents
nobody reads. A card leaves the vault, explicitly, in the transaction that ends its setup intent.
A card's outcome is audited (``card.authorization``) in the transaction that saves it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, assert_never

from cardkeep.domain import origins
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.account import Account
from cardkeep.domain.attempts import AuthAttempt
from cardkeep.domain.audit import Action, Outcome, account_actor, card_detail, page_actor
from cardkeep.domain.card import CardOnFile
from cardkeep.domain.errors import (
    ClientSecretExpired,
    ClientSecretInvalid,
    ClientSecretUsed,
    DomainError,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from cardkeep.domain.ids import Prefix
from cardkeep.domain.money import Money
from cardkeep.domain.setup_intent import ClientSecret, SetupIntent, Status
from cardkeep.service.audit import record
from cardkeep.service.changes import Changes
from cardkeep.service.context import Context, secret_hash
from cardkeep.service.idempotency import RecoveryPoint, kept
from cardkeep.service.ports import UnitOfWork


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
class CardPage:
    """The hosted card page's view of an intent: the intent and its account when the secret
    matches, the origins allowed to frame the page and hear its outcome, and why a card cannot be
    added (``refusal``; the page then says the link is invalid or expired, with no form)."""

    si: SetupIntent | None = None
    account: Account | None = None
    origins: tuple[str, ...] = ()
    refusal: DomainError | None = None


@dataclass(frozen=True)
class CardApproved:
    """The card was verified. ``keep`` stores the sealed card (cde's business) inside the
    transaction that saves the setup intent, so neither exists without the other."""

    card: CardOnFile
    attempt: AuthAttempt
    keep: Callable[[UnitOfWork], None]


@dataclass(frozen=True)
class CardDeclined:
    attempt: AuthAttempt


@dataclass(frozen=True)
class CardPastExpiry:
    attempt: AuthAttempt


CardOutcome = CardApproved | CardDeclined | CardPastExpiry


def _with_card_outcome(
    si: SetupIntent, outcome: CardOutcome, now: datetime, **changes: Any
) -> SetupIntent:
    """Fire the event a card's outcome means for a Created intent (authorize, decline or
    card_expired_at_entry), recording the attempt and, when approved, the card."""
    attempt = outcome.attempt
    changes |= {"payment_details": attempt, "setup_events": (*si.setup_events, attempt)}
    match outcome:
        case CardApproved():
            return sim.transition(si, sim.Event.AUTHORIZE, now, card=outcome.card, **changes)
        case CardDeclined():
            return sim.transition(si, sim.Event.DECLINE, now, **changes)
        case CardPastExpiry():
            return sim.transition(si, sim.Event.CARD_EXPIRED_AT_ENTRY, now, **changes)
        case _:
            assert_never(outcome)


def _audited_as(outcome: CardOutcome) -> Outcome:
    match outcome:
        case CardApproved():
            return Outcome.APPROVED
        case CardDeclined():
            return Outcome.DECLINED
        case CardPastExpiry():
            return Outcome.CARD_EXPIRED
        case _:
            assert_never(outcome)


class SetupIntents:
    def __init__(self, ctx: Context, changes: Changes) -> None:
        self._ctx = ctx
        self._changes = changes

    # -- create -------------------------------------------------------------------------------

    def create(
        self,
        account: Account,
        cmd: NewSetupIntent,
        point: RecoveryPoint[tuple[SetupIntent, str]] | None = None,
    ) -> tuple[SetupIntent, str]:
        """A Created intent and its one-time client session secret (returned in plaintext once).

        ``point`` (every use case that commits a change takes one) writes the request's answer
        onto its Idempotency-Key in the same transaction (``service.idempotency``)."""
        now = self._ctx.now(account)
        record, secret = self._new_secret(now)
        si = replace(self._draft(account, cmd, now), secret=record)
        with self._ctx.storage.transaction(write=True) as uow:
            self._changes.insert(uow, si)
            kept(point, uow, (si, secret))
            uow.commit()
        return si, secret

    def prepare(self, account: Account, cmd: NewSetupIntent) -> SetupIntent:
        """Validate a create request against the account's clock and policy: an unsaved draft.

        The PCI create calls this before it sends anything to the acquirer."""
        return self._draft(account, cmd, self._ctx.now(account))

    def create_with_card(
        self,
        draft: SetupIntent,
        outcome: CardOutcome,
        point: RecoveryPoint[SetupIntent] | None = None,
        also: Callable[[UnitOfWork], None] | None = None,
    ) -> SetupIntent:
        """The PCI create: the draft (Created) fires authorize, decline or card_expired_at_entry,
        and is saved once, in the status that leaves it (one ``setup_intent.created``). ``also``
        runs in the same transaction (the card attempt's outcome, ``service.card_limits``)."""
        si = _with_card_outcome(draft, outcome, draft.created_at)
        with self._ctx.storage.transaction(write=True) as uow:
            if also is not None:
                also(uow)
            if isinstance(outcome, CardApproved):
                outcome.keep(uow)
            self._changes.insert(uow, si)
            self._audit_card(uow, account_actor(si.account_id), si, outcome)
            kept(point, uow, si)
            uow.commit()
        return si

    def _audit_card(
        self, uow: UnitOfWork, actor: str, si: SetupIntent, outcome: CardOutcome
    ) -> None:
        """The card number's use for this setup intent: masked card, last four, vault token."""
        detail = card_detail(outcome.attempt.card)
        if isinstance(outcome, CardPastExpiry):
            detail["acquirer"] = "not asked: the card is past its expiry"
        record(
            self._ctx,
            uow,
            actor=actor,
            action=Action.CARD_AUTHORIZATION,
            subject=si.id,
            outcome=_audited_as(outcome),
            account_id=si.account_id,
            detail=detail,
        )

    def _draft(self, account: Account, cmd: NewSetupIntent, now: datetime) -> SetupIntent:
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

    # -- read ---------------------------------------------------------------------------------

    def get(self, account: Account, si_id: str) -> SetupIntent:
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.get(account.id, si_id)
        if si is None:
            raise NotFound(f"No setup intent with id {si_id}.")
        if sim.due_event(si, self._ctx.now(account)) is None:
            return si
        return self._changes.decide(lambda uow: self._load(uow, account, si_id))

    def _load(self, uow: UnitOfWork, account: Account, si_id: str) -> SetupIntent:
        """Read inside a decision; a due change is committed first (``DueFirst``)."""
        si = uow.setup_intents.get(account.id, si_id)
        if si is None:
            raise NotFound(f"No setup intent with id {si_id}.")
        return self._changes.check_due(si, self._ctx.now(account))

    # -- change -------------------------------------------------------------------------------

    def delete(self, account: Account, si_id: str, include_authorized: bool) -> SetupIntent:
        def attempt(uow: UnitOfWork) -> SetupIntent:
            si = self._load(uow, account, si_id)
            wait = self._ctx.policy.recovery_wait(None, self._ctx.clock.now())
            event = sim.deletion(si, include_authorized=include_authorized, wait=wait)
            if event is None:
                return si  # already Canceled or Closed: answered unchanged
            ended = sim.transition(si, event, self._ctx.now(account), secret=None)
            self._changes.save(uow, si, ended)
            self._changes.forget_card(uow, si, ended)  # Closed: the card leaves the vault now
            return ended

        return self._changes.decide(attempt)

    # -- client session secrets ---------------------------------------------------------------

    def _new_secret(self, now: datetime) -> tuple[ClientSecret, str]:
        secret = self._ctx.ids.secret()
        expires = (now + self._ctx.policy.client_secret_ttl).replace(microsecond=0)
        return ClientSecret(hash=secret_hash(secret), issued_at=now, expires_at=expires), secret

    def _refresh(self, uow: UnitOfWork, si: SetupIntent, now: datetime) -> tuple[SetupIntent, str]:
        record, secret = self._new_secret(now)
        fresh = sim.with_secret(si, record, now)
        self._changes.save(uow, si, fresh)
        return fresh, secret

    def refresh_secret(
        self,
        account: Account,
        si_id: str,
        point: RecoveryPoint[tuple[SetupIntent, str]] | None = None,
    ) -> tuple[SetupIntent, str]:
        def attempt(uow: UnitOfWork) -> tuple[SetupIntent, str]:
            si = self._load(uow, account, si_id)
            return kept(point, uow, self._refresh(uow, si, self._ctx.now(account)))

        return self._changes.decide(attempt)

    def _owner(self, si_id: str) -> tuple[SetupIntent, Account] | None:
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.find(si_id)
            owner = uow.accounts.get(si.account_id) if si is not None else None
        return None if si is None or owner is None else (si, owner)

    def _by_secret(self, si_id: str) -> tuple[SetupIntent, Account]:
        """The intent a client session secret is for: an unknown id gets the same 401 as a wrong
        secret, so a caller without the secret learns nothing about which ids exist."""
        found = self._owner(si_id)
        if found is None:
            raise ClientSecretInvalid("The client session secret is not valid.")
        return found

    def authenticate_public(self, si_id: str, secret: str, account: Account | None) -> SetupIntent:
        """``GET /setup-intents/public/{id}``: the client secret (valid, not consumed), or the
        owning account's key."""
        if account is not None:
            found = self._owner(si_id)
            if found is None or account.id != found[1].id:
                raise NotFound(f"No setup intent with id {si_id}.")
            return self.get(account, si_id)
        si, owner = self._by_secret(si_id)
        self._check_secret(si, secret, self._ctx.now(owner), allow_expired=False)
        return self.get(owner, si_id)

    def refresh_public_secret(
        self,
        si_id: str,
        secret: str,
        point: RecoveryPoint[tuple[SetupIntent, str]] | None = None,
    ) -> tuple[SetupIntent, str]:
        si, owner = self._by_secret(si_id)
        self._check_secret(si, secret, self._ctx.now(owner), allow_expired=True)

        def attempt(uow: UnitOfWork) -> tuple[SetupIntent, str]:
            current = self._load(uow, owner, si_id)
            now = self._ctx.now(owner)
            self._check_secret(current, secret, now, allow_expired=True)
            return kept(point, uow, self._refresh(uow, current, now))

        return self._changes.decide(attempt)

    # -- the hosted page's card endpoint ------------------------------------------------------

    def open_for_card(self, si_id: str, secret: str) -> tuple[SetupIntent, Account, datetime]:
        """The Created intent a client session secret may add a card to, its account and the
        account's now; checked before anything is sent to the acquirer."""
        si, owner = self._by_secret(si_id)
        now = self._ctx.now(owner)
        self._check_open(si, secret, now)
        return si, owner, now

    def card_page(self, si_id: str, secret: str) -> CardPage:
        """What the hosted card page shows (CONTRACT §9), read in one transaction. The origins
        are known only to a caller holding the intent's secret (used or expired included); an
        unknown id and a wrong secret look the same."""
        with self._ctx.storage.transaction(write=False) as uow:
            si = uow.setup_intents.find(si_id)
            owner = uow.accounts.get(si.account_id) if si is not None else None
            record = si.secret if si is not None else None
            if si is None or owner is None or record is None or not _matches(record, secret):
                invalid = ClientSecretInvalid("The client session secret is not valid.")
                return CardPage(refusal=invalid)
            allowed = origins.effective(uow.accounts.origins(owner.id), owner.mode)
        try:
            self._check_open(si, secret, self._ctx.now(owner))
        except (ClientSecretUsed, ClientSecretExpired, InvalidState) as refusal:
            return CardPage(si, owner, allowed, refusal)
        return CardPage(si, owner, allowed)

    def _check_open(self, si: SetupIntent, secret: str, now: datetime) -> None:
        """A card may be added: the secret is valid and the intent is (still) Created."""
        self._check_secret(si, secret, now, allow_expired=False)
        if si.status is not Status.CREATED or sim.due_event(si, now) is not None:
            shown = "Expired" if si.status is Status.CREATED else si.public_status.value
            raise InvalidState(
                f"The setup intent is {shown}; a card can only be added to a Created setup intent."
            )

    def add_card(
        self,
        si_id: str,
        secret: str,
        owner: Account,
        outcome: CardOutcome,
        point: RecoveryPoint[SetupIntent] | None = None,
        also: Callable[[UnitOfWork], None] | None = None,
    ) -> SetupIntent:
        """A card through the hosted page (CONTRACT §9): authorize (the secret is consumed),
        decline (the intent stays Created) or card_expired_at_entry; a decline or an expired card
        is a failed attempt, and the fifth consumes the secret. The secret is checked again in
        the transaction, so of two submissions only one is recorded. ``also`` runs in that
        transaction (the card attempt's outcome, ``service.card_limits``)."""

        def attempt(uow: UnitOfWork) -> SetupIntent:
            current = self._load(uow, owner, si_id)
            now = self._ctx.now(owner)
            self._check_secret(current, secret, now, allow_expired=False)
            if also is not None:
                also(uow)
            record = current.secret
            assert record is not None
            if isinstance(outcome, CardApproved):
                secret_after = replace(record, used=True)
                outcome.keep(uow)
            else:  # a failed attempt; the last one allowed uses the secret up
                failures = record.failed_attempts + 1
                limit = self._ctx.policy.client_secret_max_failures
                secret_after = replace(record, failed_attempts=failures, used=failures >= limit)
            new = _with_card_outcome(current, outcome, now, secret=secret_after)
            self._changes.save(uow, current, new)
            self._audit_card(uow, page_actor(si_id), new, outcome)
            return kept(point, uow, new)

        return self._changes.decide(attempt)

    def _check_secret(
        self, si: SetupIntent, secret: str, now: datetime, *, allow_expired: bool
    ) -> None:
        record = si.secret
        if record is None or not _matches(record, secret):
            raise ClientSecretInvalid("The client session secret is not valid.")
        if record.used:
            raise ClientSecretUsed("The client session secret has been used.")
        if allow_expired:
            if now >= record.issued_at + self._ctx.policy.client_secret_refresh_window:
                raise ClientSecretExpired("The client session secret is too old to refresh.")
        elif now >= record.expires_at:
            raise ClientSecretExpired("The client session secret has expired.")


def _matches(record: ClientSecret, secret: str) -> bool:
    return hmac.compare_digest(record.hash, secret_hash(secret))
