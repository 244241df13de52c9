"""The composition root: Settings → storage, vault, acquirer, clock → services → the two apps.

The only module (with the CLI) that may import both the API side and the cardholder-data side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.types import ASGIApp

from cardkeep.api.app import create_api_app
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.app import create_pci_app
from cardkeep.cde.charger import VaultCharger
from cardkeep.cde.keys import VaultKeyError, load_key
from cardkeep.cde.tokenize import CardIntake
from cardkeep.cde.vault import Vault
from cardkeep.config import Settings
from cardkeep.domain.account import Mode
from cardkeep.domain.errors import Unauthorized
from cardkeep.domain.ids import IdFactory, Prefix
from cardkeep.service.context import Context, Policy
from cardkeep.service.facade import Services
from cardkeep.service.ports import Clock
from cardkeep.storage import sqlite

SANDBOX_KEY_FILE = "sandbox-key.txt"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Container:
    settings: Settings
    services: Services
    acquirer: SandboxAcquirer
    api_app: ASGIApp
    pci_app: ASGIApp

    def close(self) -> None:
        self.services.ctx.storage.close()


def migrate(settings: Settings) -> list[int]:
    return sqlite.migrate(settings.sqlite_path)


def build(settings: Settings, *, clock: Clock | None = None) -> Container:
    storage = sqlite.SqliteStorage(settings.sqlite_path)
    ids = IdFactory(os.urandom)
    clock = clock or SystemClock()
    key = load_key(settings.data_dir, env_value=settings.vault_key)
    with storage.transaction(write=False) as uow:
        missing = uow.vault_records.key_ids() - {key.key_id}
    if missing:
        storage.close()
        raise VaultKeyError(
            f"stored cards were sealed under vault keys {sorted(missing)}, but the loaded key is "
            f"{key.key_id}: start with the key the cards were stored under"
        )
    vault = Vault(key, lambda: ids.new(Prefix.VAULT_TOKEN))
    acquirer = SandboxAcquirer(allow_prod=settings.allow_prod_on_sandbox_acquirer)
    policy = Policy(
        currencies=settings.currencies,
        recovery_after=timedelta(seconds=settings.recovery_after),
    )
    ctx = Context(storage, clock, ids, VaultCharger(vault, acquirer), policy)
    services = Services.build(ctx, settings.card_schemes)
    intake = CardIntake(services.setup_intents, vault, acquirer, ids)
    return Container(
        settings,
        services,
        acquirer,
        create_api_app(services),
        create_pci_app(services, intake),
    )


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
    _, key = services.accounts.create("sandbox", Mode.SANDBOX)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
