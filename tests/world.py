"""An in-process cardkeep for unit tests: both apps built by the composition root over the
in-memory storage, a clock the test moves, the sandbox acquirer (or a fake), and HTTP clients that
drive the ASGI apps in process with ``httpx.ASGITransport`` (no sockets, no files)."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from starlette.types import ASGIApp

from cardkeep import logs
from cardkeep.bootstrap import WebhookSeams, build_api, build_dispatcher, build_pci
from cardkeep.cde.acquirers.base import Acquirer
from cardkeep.cde.acquirers.ledger import StorageLedger
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.intake import CardInput
from cardkeep.cde.keys import Keyring, KeyringSource
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.cde.vault import Vault
from cardkeep.config import Settings
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.service.audit import AuthFailures
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.payment_intents import NewPaymentIntent
from cardkeep.service.ports import Charger
from cardkeep.service.setup_intents import NewSetupIntent
from cardkeep.storage.memory import MemoryStorage
from tests.merchant import VERSION, MerchantRequests

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
API_URL = "http://api.cardkeep.test"
PCI_URL = "http://pci.cardkeep.test"


class FixedClock:
    """Real time as the test says it is."""

    def __init__(self, now: datetime = T0) -> None:
        self.now_value = now

    def now(self) -> datetime:
        return self.now_value


class SyncClient:
    """A synchronous facade over ``httpx.AsyncClient(transport=ASGITransport(app))``, so tests
    written for a real server (``Merchant.api``/``.pci``) run in process unchanged. Response hooks
    are plain callables run on each response."""

    def __init__(self, app: ASGIApp, base_url: str, headers: dict[str, str]) -> None:
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers
        )
        self.event_hooks: dict[str, list[Callable[[httpx.Response], Any]]] = {"response": []}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self._runner.run(self._send(method, url, **kwargs))
        for hook in self.event_hooks["response"]:
            hook(response)
        return response

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, url, **kwargs)
        await response.aread()
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


class World:
    """Both listeners of one cardkeep, in process, built through ``build_pci``/``build_api``."""

    def __init__(
        self,
        *,
        acquirer: Acquirer | None = None,
        charger: Charger | None = None,
        recovery_after: float = 0.0,
        settings: Settings | None = None,
        keyring: KeyringSource | None = None,
    ) -> None:
        self.settings = settings or Settings(
            data_dir=Path("/nonexistent"),  # everything is passed in: nothing is read from disk
            card_schemes=("VISA", "MASTERCARD"),
            recovery_after=recovery_after,
        )
        self.storage = MemoryStorage()
        self.clock = FixedClock()
        self.acquirer = acquirer or SandboxAcquirer(StorageLedger(self.storage, self.clock))
        # The vault's keyring, in memory: one KEK, current.
        self.keyring = keyring or KeyringSource(Keyring("kek-1", {"kek-1": os.urandom(32)}))
        self.vault = Vault(self.keyring, self.storage)
        # The Idempotency-Key seal's, kept outside any database.
        self.idempotency_secret = secret = os.urandom(32)
        self.webhook_seams = WebhookSeams(secret=os.urandom(32), resolver=self.resolve)
        self.dns: dict[str, list[str]] = {"localhost": ["127.0.0.1"]}
        self.heartbeats = Heartbeats(self.clock)
        self.failures = AuthFailures()  # refused keys, counted once for both listeners
        self.pci = build_pci(
            self.settings,
            storage=self.storage,
            clock=self.clock,
            vault=self.vault,
            acquirer=self.acquirer,
            heartbeats=self.heartbeats,
            idempotency_secret=secret,
            webhooks=self.webhook_seams,
            failures=self.failures,
            fingerprint_secret=os.urandom(32),
        )
        self.api = build_api(
            self.settings,
            storage=self.storage,
            clock=self.clock,
            charger=charger or self.pci.charger,
            heartbeats=self.heartbeats,
            idempotency_secret=secret,
            webhooks=self.webhook_seams,
            failures=self.failures,
        )
        self.services = self.api.services
        self.intake = self.pci.intake
        self.account, self.key_id, self.key = self.services.accounts.create("m", Mode.SANDBOX)
        self.dispatcher = build_dispatcher(
            self.settings, self.storage, clock=self.clock, webhooks=self.webhook_seams
        )

    def resolve(self, host: str, port: int) -> list[str]:
        """The webhook resolver seam: names resolve only to what a test put in ``dns``."""
        if host not in self.dns:
            raise OSError(f"{host} is not in the test's DNS")
        return self.dns[host]

    # -- use cases, in process -----------------------------------------------------------------

    def authorized(self, pan: str = "5200000000001005", expiry: Expiry | None = None) -> str:
        cmd = NewSetupIntent("ref", "terms", "NoShow", intended_amount=Money(1000, "GBP"))
        card = CardInput(CardNumber(pan), expiry or Expiry(12, 2030), Cvv("123", None), "A")
        return self.intake.create(self.account, cmd, card).id

    def pi(self, si_id: str | None, value: int = 1000) -> str:
        cmd = NewPaymentIntent(Money(value, "GBP"), "fee", setup_intent_id=si_id)
        return self.services.payment_intents.create(self.account, cmd).id

    def events(self) -> list[tuple[str, str]]:
        """The outbox as (event, status) pairs, in order."""
        return [
            (e.event, next(v for k, v in e.data.items() if k.endswith("Status")))
            for e in self.storage.tables.outbox
        ]

    def advance(self, **delta: float) -> None:
        """Real time passes (the account clocks move with it)."""
        self.clock.now_value += timedelta(**delta)

    # -- over HTTP, in process -----------------------------------------------------------------

    def clients(self, key: str | None = None) -> tuple[SyncClient, SyncClient]:
        """(API, PCI) clients sending ``key`` (default: this world's account) and the version."""
        return self._clients({"Authorization": f"Basic {key or self.key}", "version": VERSION})

    def bare_clients(self) -> tuple[SyncClient, SyncClient]:
        """(API, PCI) clients with no default headers at all: no key, no version."""
        return self._clients({})

    def merchant(self, key: str | None = None) -> InProcessMerchant:
        """The account of ``key`` (default: this world's) with the requests the flow needs."""
        return InProcessMerchant(self, key or self.key)

    def _clients(self, headers: dict[str, str]) -> tuple[SyncClient, SyncClient]:
        return (
            SyncClient(self.api.app, API_URL, headers),
            SyncClient(self.pci.app, PCI_URL, headers),
        )


class InProcessMerchant(MerchantRequests):
    """One account's view of both listeners of a ``World``, in process: the same requests as the
    real-HTTP ``Merchant``, over ``SyncClient``s."""

    api: SyncClient
    pci: SyncClient

    def __init__(self, world: World, key: str) -> None:
        super().__init__(*world.clients(key), key)
        self.world = world


@contextmanager
def captured_log(level: str = "info") -> Iterator[io.StringIO]:
    """What cardkeep logs meanwhile, as the server would write it (``cardkeep.logs.configure``:
    JSON lines, redacted), into the yielded buffer; the logging set up before is restored."""
    before = structlog.get_config()
    buffer = io.StringIO()
    logs.configure(level, buffer)
    try:
        yield buffer
    finally:
        structlog.configure(**before)
