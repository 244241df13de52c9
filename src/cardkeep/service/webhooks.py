"""Webhook subscriptions (Dojo's management API), the delivery log and replay (CONTRACT §8).

Subscriptions are checked against the destination rules when created and when their URL changes;
secrets are 16 random bytes as 22 base64url characters, stored sealed; every write is one short
transaction. Deleting a subscription drops its pending deliveries. Delivery itself is the
dispatcher's (``cardkeep.webhooks.dispatcher``); this module only reads and re-queues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from cardkeep.domain import webhooks as rules
from cardkeep.domain.account import Account
from cardkeep.domain.errors import InvalidState, NotFound, ValidationFailed
from cardkeep.domain.ids import Prefix
from cardkeep.domain.webhooks import Delivery, DeliveryStatus, Secret, Subscription
from cardkeep.service.context import Context
from cardkeep.service.idempotency import RecoveryPoint, kept
from cardkeep.service.ports import (
    Destinations,
    SealedSecret,
    SecretBox,
    StoredSubscription,
    UnitOfWork,
)

SECRET_BYTES = 16  # 22 base64url characters
MAX_PAGE = 100

_UNSET = object()


class Webhooks:
    def __init__(self, ctx: Context, box: SecretBox, destinations: Destinations) -> None:
        self._ctx = ctx
        self._box = box
        self._destinations = destinations

    # -- subscriptions ---------------------------------------------------------------------

    def create(
        self,
        account: Account,
        events: object,
        url: object,
        description: object = None,
        point: RecoveryPoint[Subscription] | None = None,
    ) -> Subscription:
        names = rules.check_events(events)
        text = self._url(account, url)
        about = rules.check_description(description)
        now = self._ctx.now(account)
        sub = Subscription(
            id=self._ctx.ids.new(Prefix.SUBSCRIPTION),
            account_id=account.id,
            events=names,
            url=text,
            description=about,
            secrets=(self._new_secret(now, active=True),),
            created_at=now,
            updated_at=now,
        )
        with self._ctx.storage.transaction(write=True) as uow:
            mine = uow.webhooks.list(account.id)
            rules.check_subscription_count(len(mine))
            rules.check_unique_url(text, [s.url for s in mine])  # no secret opened
            uow.webhooks.add(self._sealed(sub))
            kept(point, uow, sub)
            uow.commit()
        return sub

    def all(self, account: Account) -> list[Subscription]:
        with self._ctx.storage.transaction(write=False) as uow:
            return [self._open(s) for s in uow.webhooks.list(account.id)]

    def get(self, account: Account, sub_id: str) -> Subscription:
        with self._ctx.storage.transaction(write=False) as uow:
            return self._open(self._stored(uow, account, sub_id))

    def update(
        self,
        account: Account,
        sub_id: str,
        *,
        events: object = _UNSET,
        url: object = _UNSET,
        description: object = _UNSET,
    ) -> Subscription:
        if events is _UNSET and url is _UNSET and description is _UNSET:
            raise ValidationFailed.one(
                "Body", "Send at least one of events, url and description to change."
            )
        names = None if events is _UNSET else rules.check_events(events)
        text = None if url is _UNSET else self._url(account, url)
        about = None if description is _UNSET else rules.check_description(description)
        with self._ctx.storage.transaction(write=True) as uow:
            current = self._open(self._stored(uow, account, sub_id))
            updated = replace(
                current,
                events=current.events if names is None else names,
                url=current.url if text is None else text,
                description=current.description if description is _UNSET else about,
                updated_at=self._ctx.now(account),
            )
            uow.webhooks.save(self._sealed(updated))
            uow.commit()
        return updated

    def delete(self, account: Account, sub_id: str) -> None:
        with self._ctx.storage.transaction(write=True) as uow:
            if not uow.webhooks.delete(account.id, sub_id):
                raise _no_subscription(sub_id)
            uow.commit()

    # -- secrets ---------------------------------------------------------------------------

    def add_secret(
        self, account: Account, sub_id: str, point: RecoveryPoint[Subscription] | None = None
    ) -> Subscription:
        return self._change_secrets(
            account,
            sub_id,
            lambda s, now: s.add_secret(self._new_secret(now, active=False)),
            point,
        )

    def activate_secret(self, account: Account, sub_id: str, secret_id: str) -> Subscription:
        return self._change_secrets(account, sub_id, lambda s, _: s.activate(secret_id))

    def delete_secret(self, account: Account, sub_id: str, secret_id: str) -> Subscription:
        return self._change_secrets(account, sub_id, lambda s, _: s.delete_secret(secret_id))

    def _change_secrets(
        self,
        account: Account,
        sub_id: str,
        change: Callable[[Subscription, datetime], Subscription],
        point: RecoveryPoint[Subscription] | None = None,
    ) -> Subscription:
        with self._ctx.storage.transaction(write=True) as uow:
            now = self._ctx.now(account)
            current = self._open(self._stored(uow, account, sub_id))
            updated = replace(change(current, now), updated_at=now)
            uow.webhooks.save(self._sealed(updated))
            kept(point, uow, updated)
            uow.commit()
        return updated

    # -- the delivery log ------------------------------------------------------------------

    def deliveries(
        self,
        account: Account,
        *,
        status: str | None = None,
        subscription_id: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Delivery], str | None]:
        """One page, newest first, and the cursor of the next page (None: the last page)."""
        wanted = None
        if status is not None:
            try:
                wanted = DeliveryStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in DeliveryStatus)
                raise ValidationFailed.one(
                    "status", f"The status must be one of {known}."
                ) from None
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationFailed.one("limit", f"The limit must be between 1 and {MAX_PAGE}.")
        with self._ctx.storage.transaction(write=False) as uow:
            if after is not None and uow.deliveries.get(account.id, after) is None:
                raise ValidationFailed.one("after", "The cursor names no delivery of yours.")
            rows = uow.deliveries.page(
                account.id,
                status=wanted,
                subscription_id=subscription_id,
                after=after,
                limit=limit + 1,
            )
        page = rows[:limit]
        return page, (page[-1].id if len(rows) > limit else None)

    def replay(
        self, account: Account, delivery_id: str, point: RecoveryPoint[Delivery] | None = None
    ) -> Delivery:
        with self._ctx.storage.transaction(write=True) as uow:
            found = uow.deliveries.get(account.id, delivery_id)
            if found is None:
                raise NotFound(f"No webhook delivery with id {delivery_id}.")
            if uow.webhooks.get(account.id, found.subscription_id) is None:
                raise InvalidState("The delivery's subscription was deleted; nothing to send to.")
            again = uow.deliveries.replay(account.id, delivery_id, self._ctx.now(account))
            assert again is not None
            kept(point, uow, again)
            uow.commit()
        return again

    def replay_ids(self, delivery_ids: list[str]) -> list[Delivery]:
        """Re-queue deliveries by id, whatever their account (the CLI's ``webhooks replay``);
        all or none: an unknown id, or one whose subscription was deleted, changes nothing."""
        replayed = []
        with self._ctx.storage.transaction(write=True) as uow:
            for delivery_id in delivery_ids:
                found = uow.deliveries.find(delivery_id)
                if found is None:
                    raise NotFound(f"No webhook delivery with id {delivery_id}.")
                account = uow.accounts.get(found.account_id)
                if account is None or uow.webhooks.find(found.subscription_id) is None:
                    raise InvalidState(
                        f"The subscription of delivery {delivery_id} was deleted; "
                        "nothing to send to."
                    )
                again = uow.deliveries.replay(account.id, delivery_id, self._ctx.now(account))
                assert again is not None
                replayed.append(again)
            uow.commit()
        return replayed

    def recent(self, account_id: str | None = None, limit: int = 200) -> list[Delivery]:
        with self._ctx.storage.transaction(write=False) as uow:
            return uow.deliveries.recent(account_id, limit)

    def replay_failed_since(self, since: datetime) -> list[Delivery]:
        """Every failed delivery whose last attempt was at or after ``since`` (the CLI's
        ``webhooks replay --failed-since``), re-queued; those of deleted subscriptions skipped."""
        replayed = []
        with self._ctx.storage.transaction(write=True) as uow:
            for found in uow.deliveries.failed_since(since):
                account = uow.accounts.get(found.account_id)
                if account is None or uow.webhooks.find(found.subscription_id) is None:
                    continue
                again = uow.deliveries.replay(account.id, found.id, self._ctx.now(account))
                if again is not None:
                    replayed.append(again)
            uow.commit()
        return replayed

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, account: Account, url: object) -> str:
        if not isinstance(url, str) or not url or len(url) > rules.MAX_URL_LENGTH:
            raise ValidationFailed.one(
                "Url", f"The Url field must be a URL of at most {rules.MAX_URL_LENGTH} characters."
            )
        return self._destinations.check(url, account.mode)

    def _new_secret(self, now: datetime, *, active: bool) -> Secret:
        return Secret(
            id=self._ctx.ids.new(Prefix.WEBHOOK_SECRET),
            value=self._ctx.ids.secret(SECRET_BYTES),
            created_at=now,
            is_active=active,
        )

    def _stored(self, uow: UnitOfWork, account: Account, sub_id: str) -> StoredSubscription:
        found = uow.webhooks.get(account.id, sub_id)
        if found is None:
            raise _no_subscription(sub_id)
        return found

    def _sealed(self, sub: Subscription) -> StoredSubscription:
        return StoredSubscription(
            id=sub.id,
            account_id=sub.account_id,
            events=sub.events,
            url=sub.url,
            description=sub.description,
            secrets=tuple(
                SealedSecret(s.id, self._box.seal(s.id, s.value), s.created_at, s.is_active)
                for s in sub.secrets
            ),
            created_at=sub.created_at,
            updated_at=sub.updated_at,
        )

    def _open(self, stored: StoredSubscription) -> Subscription:
        return open_subscription(stored, self._box)


def open_subscription(stored: StoredSubscription, box: SecretBox) -> Subscription:
    return Subscription(
        id=stored.id,
        account_id=stored.account_id,
        events=stored.events,
        url=stored.url,
        description=stored.description,
        secrets=tuple(
            Secret(s.id, box.open(s.id, s.sealed), s.created_at, s.is_active)
            for s in stored.secrets
        ),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _no_subscription(sub_id: str) -> NotFound:
    return NotFound(f"No webhook subscription with id {sub_id}.")
