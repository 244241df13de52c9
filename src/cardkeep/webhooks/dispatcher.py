"""The webhook dispatcher: delivers the outbox at least once (CONTRACT §8.3, §8.4).

Each run leases due deliveries in one short transaction (a committed ``leased_until``; ``SKIP
LOCKED`` on PostgreSQL), so many dispatchers, in many processes and hosts, never make the same
attempt twice; no transaction is open while a POST is in flight. An attempt re-checks the
destination rules, connects to the very address it checked (the Host header and the TLS server
name keep the URL's host), signs the event's stored bytes, and counts as delivered on a 2xx within
15 s (connect 5 s; redirects are not followed). Its outcome is written back only under the lease
that made it. Due times are on the account's clock, so a sandbox test brings a retry forward by
moving the clock; ``webhook-timestamp`` is real time.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from cardkeep import __version__
from cardkeep.domain.account import Account
from cardkeep.domain.errors import UrlNotAllowed
from cardkeep.domain.webhooks import AttemptOutcome, Delivery, Subscription
from cardkeep.logs import get_logger
from cardkeep.service.ports import Clock, SecretBox, Storage
from cardkeep.service.webhooks import open_subscription
from cardkeep.webhooks.destinations import DestinationRules
from cardkeep.webhooks.signing import signed_headers

log = get_logger("cardkeep.webhooks")

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 15.0
MAX_ERROR = 300


@dataclass(frozen=True, slots=True)
class _Work:
    delivery: Delivery
    leased_until: datetime
    account: Account
    subscription: Subscription
    body: bytes


class Dispatcher:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        box: SecretBox,
        rules: DestinationRules,
        *,
        ca_file: str | None = None,
        batch: int = 20,
        jitter: Callable[[], float] = lambda: random.uniform(-1.0, 1.0),  # noqa: S311
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._box = box
        self._rules = rules
        self.batch = batch
        self._jitter = jitter
        self._lease = timedelta(seconds=TOTAL_TIMEOUT * 4)
        self._tls = ssl.create_default_context(cafile=ca_file)

    async def run_once(self) -> int:
        """Lease what is due and attempt it; the number of attempts made."""
        work = await asyncio.to_thread(self._lease_due)
        if not work:
            return 0
        timeout = httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=self._tls, trust_env=False
        ) as client:
            await asyncio.gather(*(self._attempt(client, item) for item in work))
        return len(work)

    def prune(self, retention_days: int) -> int:
        """Delete delivered deliveries and finished events older than ``retention_days`` (real
        time); the number of rows deleted."""
        before = self._clock.now() - timedelta(days=retention_days)
        with self._storage.transaction(write=True) as uow:
            pruned = uow.deliveries.prune(before)
            uow.commit()
        return pruned

    def _lease_due(self) -> list[_Work]:
        now = self._clock.now()
        until = now + self._lease
        with self._storage.transaction(write=False) as uow:
            due = uow.deliveries.next_due()  # in real time: the account's offset taken off
        if due is None or due > now:
            return []  # nothing to lease: no write transaction
        with self._storage.transaction(write=True) as uow:
            leased = uow.deliveries.lease_due(now, until, self.batch)
            uow.commit()
        work = []
        with self._storage.transaction(write=False) as uow:
            for delivery in leased:
                account = uow.accounts.get(delivery.account_id)
                stored = uow.webhooks.find(delivery.subscription_id)
                body = uow.deliveries.payload(delivery.event_id)
                if account is None or stored is None or body is None:
                    continue  # deleted meanwhile: nothing to send
                sub = open_subscription(stored, self._box)
                work.append(_Work(delivery, until, account, sub, body))
        return work

    async def _attempt(self, client: httpx.AsyncClient, item: _Work) -> None:
        status: int | None = None
        error: str | None = None
        try:
            target = await asyncio.to_thread(
                self._rules.resolve, item.subscription.url, item.account.mode
            )
        except UrlNotAllowed as exc:
            error = f"url_not_allowed: {exc.detail}"
        else:
            active = item.subscription.active_secret.value
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"cardkeep-webhooks/{__version__}",
                "Host": target.host_header,
                **signed_headers(
                    item.body,
                    event_id=item.delivery.event_id,
                    timestamp=int(time.time()),
                    active=active,
                    secrets=[s.value for s in item.subscription.secrets],
                ),
            }
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            try:
                response = await asyncio.wait_for(
                    client.post(
                        target.connect_url,
                        content=item.body,
                        headers=headers,
                        extensions=extensions,
                    ),
                    TOTAL_TIMEOUT,
                )
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except TimeoutError:
                error = f"no answer within {TOTAL_TIMEOUT:.0f} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        delivered = error is None
        outcome = item.delivery.attempted(
            item.account.now(self._clock.now()),
            delivered=delivered,
            response_status=status,
            error=error,
            jitter=self._jitter(),
        )
        recorded = await asyncio.to_thread(self._finish, item, outcome)
        log.info(
            "webhook_attempt",
            delivery_id=item.delivery.id,
            event_id=item.delivery.event_id,
            attempt=outcome.attempts,
            status=outcome.status.value,
            response_status=status,
            error=error,
            recorded=recorded,
        )

    def _finish(self, item: _Work, outcome: AttemptOutcome) -> bool:
        with self._storage.transaction(write=True) as uow:
            done = uow.deliveries.finish(item.delivery.id, item.leased_until, outcome)
            uow.commit()
        return done
