"""The composition root: Settings → storage, vault, acquirer, clock → services → the two apps.

The only module (with the CLI) that constructs adapters and may import both the API side and the
cardholder-data side. Tests and deployments build through the same functions:

- ``storage_for(settings)``: the storage adapter the database URL names;
- ``build_pci(settings, *, storage, clock, vault, acquirer)``: the PCI listener's app and what it
  owns — the vault, the acquirer, and the charger (the only holder of key material; it also
  refunds and reverses captured charges, by the capture's acquirer key, with no card data);
- ``build_api(settings, *, storage, clock, charger)``: the API listener's app and its services;
- ``Runtime``: both, over one storage, with the PCI side's charger in process, as the CLI and the
  in-process tests run them (``with Runtime.open(settings) as rt: ...``);
- ``pci_process(settings, secret)`` / ``api_process(settings, url, secret)``: what each process of
  ``serve`` runs (``Served``). The PCI process alone opens the keyring; it serves the PCI listener
  and the internal listener (``cde.internal``) over its charger. An API worker is built from
  settings without any key (``Settings.without_keys``) and charges through ``hop.client``.

Anything passed in is the caller's to close; anything built here is closed by ``close()``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Protocol

from starlette.types import ASGIApp

from cardkeep.api.app import create_api_app
from cardkeep.cde import vault_store
from cardkeep.cde.acquirers.base import Acquirer
from cardkeep.cde.acquirers.ledger import StorageLedger
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.app import create_pci_app
from cardkeep.cde.charger import VaultCharger
from cardkeep.cde.fingerprint import CardFingerprints
from cardkeep.cde.intake import CardIntake
from cardkeep.cde.internal import create_internal_app
from cardkeep.cde.keys import (
    KEYRING_FILE,
    KeyringSource,
    VaultKeyError,
    generate_keyring_file,
    load_legacy_key,
)
from cardkeep.cde.vault import DEK_PREFIX, Vault
from cardkeep.config import Settings, SettingsError
from cardkeep.domain.account import Mode
from cardkeep.domain.errors import Unauthorized
from cardkeep.domain.ids import IdFactory
from cardkeep.hop.client import InternalCharger, trust
from cardkeep.keyfiles import exposure, load_or_create
from cardkeep.service.audit import AuthFailures
from cardkeep.service.context import Context, Policy
from cardkeep.service.facade import Services
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.key_checks import check_shared_key
from cardkeep.service.ports import Charger, Clock, Storage
from cardkeep.service.retention import PurgeReport, Retention
from cardkeep.storage import postgres, sqlite
from cardkeep.web.idempotency import Seal
from cardkeep.webhooks.destinations import (
    DestinationRules,
    Resolver,
    allow_list,
    system_resolver,
)
from cardkeep.webhooks.dispatcher import Dispatcher
from cardkeep.webhooks.secretbox import AesSecretBox

SANDBOX_KEY_FILE = "sandbox-key.txt"
IDEMPOTENCY_KEY_FILE = "idempotency.key"
WEBHOOK_KEY_FILE = "webhook.key"
FINGERPRINT_KEY_FILE = "fingerprint.key"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _pool(settings: Settings) -> postgres.PoolSettings:
    return postgres.PoolSettings(
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


def storage_for(settings: Settings) -> Storage:
    """The storage adapter the database URL names: SQLite (a file) or PostgreSQL."""
    database = settings.database
    if database.engine == "postgresql":
        assert database.url is not None
        return postgres.PostgresStorage(database.url, _pool(settings))
    assert database.path is not None
    return sqlite.SqliteStorage(database.path)


def migrate(settings: Settings) -> list[int]:
    """Apply pending migrations to the database the settings name, under a lock (an advisory
    lock on PostgreSQL, BEGIN IMMEDIATE on SQLite); the versions applied now."""
    database = settings.database
    if database.engine == "postgresql":
        assert database.url is not None
        return postgres.migrate(database.url, _pool(settings))
    assert database.path is not None
    return sqlite.migrate(database.path)


def purge(
    settings: Settings, older_than: timedelta, *, dry_run: bool = False
) -> tuple[PurgeReport, str | None]:
    """``cardkeep purge``: the retention purge (``service.retention``), then, unless a dry run,
    the database's own copies of what it removed: the SQLite WAL checkpointed and truncated, or
    the touched PostgreSQL tables vacuumed. Needs no key: nothing is opened or sealed. Returns
    the counts and what was done to the database (None in a dry run)."""
    storage = storage_for(settings)
    try:
        report = Retention(storage, SystemClock()).purge(older_than, dry_run=dry_run)
        if dry_run:
            return report, None
        if isinstance(storage, postgres.PostgresStorage):
            storage.vacuum(("setup_intents", "payment_intents", "vault_cards"))
            return report, "vacuumed setup_intents, payment_intents, vault_cards"
        assert isinstance(storage, sqlite.SqliteStorage)
        if storage.checkpoint():
            return report, "checkpointed and truncated the WAL"
        return report, "the WAL is still in use by a reader: run cardkeep purge again"
    finally:
        storage.close()


def _policy(settings: Settings) -> Policy:
    return Policy(
        currencies=settings.currencies,
        recovery_after=timedelta(seconds=settings.recovery_after),
        acquirer_timeout=timedelta(seconds=settings.effective_acquirer_timeout),
        sweep_interval=timedelta(seconds=settings.sweep_interval),
        idempotency_lease=timedelta(seconds=settings.idempotency_lease),
        card_window=timedelta(seconds=settings.limit_window),
        card_failed_per_account=settings.limit_failed_per_account,
        card_failed_per_secret=settings.limit_failed_per_secret,
        card_cards_per_secret=settings.limit_cards_per_secret,
        card_approved_per_account=settings.limit_approved_per_account,
    )


def _outside_db(
    name: str,
    given: bytes | None,
    path: Path,
    env: tuple[str, str | None],
    storage: Storage | None,
) -> bytes:
    """A key kept outside the database: the one passed in (tests), else the environment
    variable ``env`` names or the key file in the data directory (generated on first use).
    With ``storage``, checked against the key the database's other processes use
    (``service.key_checks``)."""
    env_name, env_value = env
    if given is not None:
        material, source = given, "passed in"
    else:
        material = load_or_create(path, env_name=env_name, env_value=env_value)
        source = env_name if env_value else str(path)
    if storage is not None:
        check_shared_key(storage, name, material, source)
    return material


def webhook_box(
    settings: Settings, key: bytes | None = None, storage: Storage | None = None
) -> AesSecretBox:
    """The seal of webhook secrets, keyed with a secret kept outside the database."""
    path = settings.data_dir / WEBHOOK_KEY_FILE
    env = ("CARDKEEP_WEBHOOK_KEY", settings.webhook_key)
    return AesSecretBox(_outside_db("webhook", key, path, env, storage))


def destination_rules(settings: Settings, resolver: Resolver | None = None) -> DestinationRules:
    allow = allow_list(",".join(settings.webhook_allow))
    return DestinationRules(resolver or system_resolver, allow)


def _services(
    settings: Settings,
    storage: Storage,
    clock: Clock,
    charger: Charger,
    heartbeats: Heartbeats | None,
    webhooks: WebhookSeams,
    failures: AuthFailures | None,
) -> Services:
    ctx = Context(
        storage,
        clock,
        IdFactory(os.urandom),
        charger,
        _policy(settings),
        failures or AuthFailures(),
    )
    return Services.build(
        ctx,
        settings.card_schemes,
        webhook_box(settings, webhooks.secret, storage),
        destination_rules(settings, webhooks.resolver),
        heartbeats,
    )


@dataclass(frozen=True)
class WebhookSeams:
    """What tests pass instead of the disk and the network: the key that seals webhook
    secrets, and the resolver of webhook hosts."""

    secret: bytes | None = None
    resolver: Resolver | None = None


def build_dispatcher(
    settings: Settings,
    storage: Storage,
    *,
    clock: Clock | None = None,
    webhooks: WebhookSeams = WebhookSeams(),
) -> Dispatcher:
    """The webhook dispatcher over ``storage`` (``serve`` runs one in every process;
    ``cardkeep webhooks dispatch`` runs one alone)."""
    return Dispatcher(
        storage,
        clock or SystemClock(),
        webhook_box(settings, webhooks.secret, storage),
        destination_rules(settings, webhooks.resolver),
        ca_file=settings.webhook_ca_file,
    )


class _Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class _Owner:
    """Closes what the builder made (not what the caller passed in)."""

    closers: list[_Closable] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            self.closers.pop().close()


@dataclass
class PciSide:
    """The PCI listener and the cardholder-data pieces it owns."""

    app: ASGIApp
    services: Services
    storage: Storage
    vault: Vault
    acquirer: Acquirer
    charger: VaultCharger
    intake: CardIntake
    owner: _Owner

    def close(self) -> None:
        self.owner.close()


@dataclass
class ApiSide:
    """The API listener and its services (no key material: charges go through ``charger``)."""

    app: ASGIApp
    services: Services
    storage: Storage
    owner: _Owner

    def close(self) -> None:
        self.owner.close()


def _seal(settings: Settings, secret: bytes | None, storage: Storage | None = None) -> Seal:
    """The Idempotency-Key seal, keyed with a secret kept outside the database."""
    path = settings.data_dir / IDEMPOTENCY_KEY_FILE
    env = ("CARDKEEP_IDEMPOTENCY_KEY", settings.idempotency_key)
    return Seal(_outside_db("idempotency", secret, path, env, storage))


def fingerprints(
    settings: Settings, key: bytes | None = None, storage: Storage | None = None
) -> CardFingerprints:
    """The card fingerprints of the card-testing limits, keyed with a secret kept outside the
    database."""
    path = settings.data_dir / FINGERPRINT_KEY_FILE
    env = ("CARDKEEP_FINGERPRINT_KEY", settings.fingerprint_key)
    return CardFingerprints(_outside_db("fingerprint", key, path, env, storage))


def _has_prod_account(storage: Storage) -> bool:
    with storage.transaction(write=False) as uow:
        return any(account.mode is Mode.PROD for account in uow.accounts.list())


def keyring_source(settings: Settings, storage: Storage) -> KeyringSource:
    """The vault's keyring: ``CARDKEEP_KEYRING_JSON``, the file ``CARDKEEP_KEYRING`` names, or
    ``<data dir>/keyring.json``, generated on first use while the database holds no prod account
    (``serve`` warns that it sits beside the data, and refuses it once a prod account exists:
    ``check_prod_keyring``)."""
    if settings.keyring_json:
        return KeyringSource.inline(settings.keyring_json)
    if settings.keyring is not None:
        return KeyringSource.file(settings.keyring)
    path = settings.data_dir / KEYRING_FILE
    if not path.exists():
        if _has_prod_account(storage):
            raise VaultKeyError(NO_KEYRING)
        generate_keyring_file(path, f"kek-{datetime.now(UTC):%Y-%m}")
    return KeyringSource.file(path)


NO_KEYRING = (
    "the database holds a prod account: configure the vault's keyring outside the data "
    "directory (CARDKEEP_KEYRING=FILE, mode 0600, or CARDKEEP_KEYRING_JSON)"
)


def check_prod_keyring(settings: Settings, storage: Storage) -> None:
    """``serve``'s rules when the database holds a prod account: a configured keyring, and a
    keyring file outside the data directory that only its owner can read."""
    if not _has_prod_account(storage):
        return
    if settings.keyring_json:
        return
    if settings.keyring is None:
        raise VaultKeyError(NO_KEYRING)
    path = settings.keyring.resolve()
    if path.is_relative_to(settings.data_dir.resolve()):
        raise VaultKeyError(
            f"the keyring {settings.keyring} is inside the data directory: with a prod account "
            "in the database, keep it elsewhere (CARDKEEP_KEYRING)"
        )
    try:
        exposed = exposure(path)
    except OSError as exc:
        raise VaultKeyError(f"cannot read the keyring {settings.keyring}: {exc.strerror}") from exc
    if exposed:
        raise VaultKeyError(f"the keyring {settings.keyring} {exposed}")


def vault_for(settings: Settings, storage: Storage) -> Vault:
    """The vault over ``storage``: the keyring, and the legacy key when one is present."""
    legacy = load_legacy_key(settings.data_dir, env_value=settings.vault_key)
    return Vault(keyring_source(settings, storage), storage, legacy)


def _check_vault_key(storage: Storage, vault: Vault) -> None:
    """Refuse to start when stored cards need a key that is not loaded: a legacy key other than
    the one loaded, or data-encryption keys wrapped under KEKs the keyring does not hold."""
    with storage.transaction(write=False) as uow:
        key_ids = vault_store.key_ids(uow)
        keks = set(vault_store.rows(uow).kek_counts())
    legacy = {k for k in key_ids if not k.startswith(DEK_PREFIX)} - {vault.legacy_key_id}
    if legacy:
        raise VaultKeyError(
            f"stored cards were sealed under vault keys {sorted(legacy)}, but the loaded legacy "
            f"key is {vault.legacy_key_id or 'none'}: start with the vault.key (or "
            "CARDKEEP_VAULT_KEY) the cards were stored under"
        )
    missing = keks - set(vault.keyring.get().keys)
    if missing:
        raise VaultKeyError(
            f"stored data-encryption keys are wrapped under KEKs {sorted(missing)}, which the "
            "keyring does not hold: start with the keyring they were wrapped under"
        )


def build_pci(
    settings: Settings,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    vault: Vault | None = None,
    acquirer: Acquirer | None = None,
    heartbeats: Heartbeats | None = None,
    idempotency_secret: bytes | None = None,
    webhooks: WebhookSeams = WebhookSeams(),
    failures: AuthFailures | None = None,
    fingerprint_secret: bytes | None = None,
) -> PciSide:
    owner = _Owner()
    if storage is None:
        storage = storage_for(settings)
        owner.closers.append(storage)
    try:
        if vault is None:
            vault = vault_for(settings, storage)
        _check_vault_key(storage, vault)
        cards = fingerprints(settings, fingerprint_secret, storage)
    except BaseException:
        owner.close()
        raise
    if acquirer is None:
        ledger = StorageLedger(storage, clock or SystemClock())
        acquirer = SandboxAcquirer(ledger, allow_prod=settings.allow_prod_on_sandbox_acquirer)
    charger = VaultCharger(storage, vault, acquirer)
    services = _services(
        settings, storage, clock or SystemClock(), charger, heartbeats, webhooks, failures
    )
    intake = CardIntake(
        services.setup_intents, vault, acquirer, services.ctx.ids, services.card_limits, cards
    )
    app = create_pci_app(services, intake, _seal(settings, idempotency_secret, storage))
    return PciSide(app, services, storage, vault, acquirer, charger, intake, owner)


def build_api(
    settings: Settings,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    charger: Charger | None = None,
    heartbeats: Heartbeats | None = None,
    idempotency_secret: bytes | None = None,
    webhooks: WebhookSeams = WebhookSeams(),
    failures: AuthFailures | None = None,
) -> ApiSide:
    """The API listener. ``charger`` is how it reaches the cardholder-data side; without one it
    builds the PCI side's charger in this process (until the processes are split). ``failures``
    (like ``heartbeats``) is shared with the PCI side of the same process: refused keys are
    counted once per process."""
    owner = _Owner()
    if storage is None:
        storage = storage_for(settings)
        owner.closers.append(storage)
    if charger is None:
        try:
            charger = build_pci(
                settings,
                storage=storage,
                clock=clock,
                heartbeats=heartbeats,
                idempotency_secret=idempotency_secret,
                webhooks=webhooks,
                failures=failures,
            ).charger
        except BaseException:
            owner.close()
            raise
    services = _services(
        settings, storage, clock or SystemClock(), charger, heartbeats, webhooks, failures
    )
    app = create_api_app(services, _seal(settings, idempotency_secret, storage))
    return ApiSide(app, services, storage, owner)


@dataclass
class Runtime:
    """Both listeners over one storage, as one process runs them; a context manager."""

    settings: Settings
    storage: Storage
    pci: PciSide
    api: ApiSide

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        storage = storage_for(settings)
        beats = Heartbeats(clock or SystemClock())
        failures = AuthFailures()  # one count of refused keys for both listeners
        try:
            pci = build_pci(
                settings, storage=storage, clock=clock, heartbeats=beats, failures=failures
            )
        except BaseException:
            storage.close()
            raise
        api = build_api(
            settings,
            storage=storage,
            clock=clock,
            charger=pci.charger,
            heartbeats=beats,
            failures=failures,
        )
        return cls(settings, storage, pci, api)

    @property
    def services(self) -> Services:
        """The API side's use cases (accounts, intents, the sweeper)."""
        return self.api.services

    def close(self) -> None:
        self.api.close()
        self.pci.close()
        self.storage.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class Served:
    """What one process of ``serve`` runs: its apps (one per listening socket, in order), the
    services its background loops use, what SIGHUP reloads (the PCI process's keyring), and how to
    close it all."""

    apps: tuple[ASGIApp, ...]
    services: Services
    storage: Storage
    reload: Callable[[], None] | None
    close: Callable[[], None]
    # Per app, in order: the TLS certificate and key it is served with, or None (plain HTTP).
    tls: tuple[tuple[Path, Path] | None, ...] = ()


def pci_process(settings: Settings, secret: str) -> Served:
    """The PCI process: the PCI listener's app and the internal listener's, over its own vault,
    acquirer and charger: the only process that loads key material."""
    tls = _internal_tls(settings)
    storage = storage_for(settings)
    try:
        pci = build_pci(
            settings,
            storage=storage,
            heartbeats=Heartbeats(SystemClock()),
            failures=AuthFailures(),
        )
    except BaseException:
        storage.close()
        raise
    internal = create_internal_app(pci.charger, secret)

    def close() -> None:
        pci.close()
        storage.close()

    def reload() -> None:
        pci.vault.keyring.reload()

    return Served((pci.app, internal), pci.services, storage, reload, close, (None, tls))


def _internal_tls(settings: Settings) -> tuple[Path, Path] | None:
    """The internal listener's certificate and key, checked to load (a clear error at start,
    not a PCI process that fails to serve); None without them."""
    cert, key = settings.internal_tls_cert, settings.internal_tls_key
    if cert is None or key is None:
        return None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"CARDKEEP_INTERNAL_TLS_CERT and CARDKEEP_INTERNAL_TLS_KEY ({cert}, {key}) do not "
            f"load as a PEM certificate and its private key: {exc}"
        ) from exc
    return cert, key


def internal_trust(settings: Settings, url: str) -> ssl.SSLContext | None:
    """How an API worker verifies the internal listener at ``url``: nothing to verify over
    http://; over https://, CARDKEEP_INTERNAL_CA_FILE, else the certificate the PCI process serves
    (when this host has it: one supervisor), else the system's CAs."""
    if not url.startswith("https://"):
        return None
    if settings.internal_ca_file is not None:
        return trust(settings.internal_ca_file)
    if settings.internal_tls_cert is not None:
        return trust(settings.internal_tls_cert, exact=True)
    return trust(None)


def api_process(settings: Settings, url: str, secret: str) -> Served:
    """An API worker: the API listener's app, built from ``settings`` without any key, charging
    through the PCI process's internal listener at ``url``."""
    settings = settings.without_keys()
    storage = storage_for(settings)
    charger = InternalCharger(url, secret, verify=internal_trust(settings, url))
    try:
        api = build_api(
            settings,
            storage=storage,
            charger=charger,
            heartbeats=Heartbeats(SystemClock()),
            failures=AuthFailures(),
        )
    except BaseException:
        charger.close()
        storage.close()
        raise

    def close() -> None:
        api.close()
        charger.close()
        storage.close()

    return Served((api.app,), api.services, storage, None, close)


def ensure_sandbox_account(settings: Settings, services: Services) -> str:
    """For ``make run``: the key of the data directory's sandbox account, created on first start.

    The key is kept in ``<data dir>/sandbox-key.txt`` (mode 0600) so later starts can print it.
    """
    path: Path = settings.data_dir / SANDBOX_KEY_FILE
    if path.exists():
        kept = path.read_text("ascii").strip()
        try:
            services.accounts.authenticate(kept)
            return kept
        except Unauthorized:
            pass  # the database was reset: make a new account and key
    _, _, key = services.accounts.create("sandbox", Mode.SANDBOX)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
