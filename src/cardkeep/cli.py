"""The ``cardkeep`` command: serve, migrate, sweep, purge, accounts, webhooks, audit, keys."""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cardkeep import __version__
from cardkeep.config import LISTENERS, Settings, SettingsError, from_env
from cardkeep.domain.account import Mode
from cardkeep.domain.audit import AuditEntry
from cardkeep.domain.errors import DomainError
from cardkeep.domain.timefmt import iso

if TYPE_CHECKING:
    from cardkeep.cde.rotation import Rotation


def _settings(**overrides: Any) -> Settings:
    try:
        settings = from_env().with_overrides(**overrides)
        settings.database  # noqa: B018 - validates the database URL early
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    return settings


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the SQLite database and the sandbox keyring [env CARDKEEP_DATA_DIR; "
    "default ./var].",
)
database_url_option = click.option(
    "--database-url",
    help="sqlite:///PATH [env CARDKEEP_DATABASE_URL; default <data dir>/cardkeep.db].",
)


class _Group(click.Group):
    """Turns configuration and start-up failures into one clear line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise  # --help and --version end this way (a RuntimeError subclass): not a failure
        except (SettingsError, RuntimeError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="cardkeep")
def main() -> None:
    """cardkeep: cards on file and merchant-initiated charges (Dojo Setup/Payment Intents API)."""


@main.command()
@data_dir_option
@database_url_option
@click.option("--host", help="Interface the API and PCI listeners bind to [default 127.0.0.1].")
@click.option("--api-port", type=int, help="API listener port [default 8000].")
@click.option("--pci-port", type=int, help="PCI listener port [default 8001].")
@click.option(
    "--internal-port",
    type=int,
    help="The PCI process's internal listener port, on CARDKEEP_INTERNAL_HOST [default "
    "127.0.0.1:8002]; never exposed.",
)
@click.option(
    "--listener",
    type=click.Choice(LISTENERS),
    help="all: the PCI process and the API workers under one supervisor [default]; api: only the "
    "API workers, charging through CARDKEEP_INTERNAL_URL; pci: only the PCI process. A split "
    "deployment needs CARDKEEP_INTERNAL_SECRET (or _FILE) on both sides.",
)
@click.option("--workers", type=click.IntRange(1, 64), help="API worker processes [default 1].")
@click.option(
    "--sandbox-account",
    is_flag=True,
    help="Create a sandbox account on first start and print its key (what `make run` does).",
)
def serve(
    data_dir: Path | None,
    database_url: str | None,
    host: str | None,
    api_port: int | None,
    pci_port: int | None,
    internal_port: int | None,
    listener: str | None,
    workers: int | None,
    sandbox_account: bool,
) -> None:
    """Run the PCI process (PCI and internal listeners; the only one holding keys) and the API
    workers, under one supervisor (applies pending migrations first)."""
    from cardkeep.bootstrap import api_process, ensure_sandbox_account, migrate, pci_process
    from cardkeep.serve import Listeners, bind, write_ports
    from cardkeep.serve import serve as run

    settings = _settings(
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        api_port=api_port,
        pci_port=pci_port,
        internal_port=internal_port,
        listener=listener,
        workers=workers,
    )
    applied = migrate(settings)
    if applied:
        click.echo(f"applied migrations {applied}", err=True)
    side = settings.listener
    secret = settings.internal_secret
    if secret is None:
        if side != "all":
            raise click.ClickException(
                f"--listener {side} needs the internal secret both sides share: set "
                "CARDKEEP_INTERNAL_SECRET, or CARDKEEP_INTERNAL_SECRET_FILE (a 0600 file)"
            )
        secret = secrets.token_urlsafe(32)  # both sides start here: a new one each start
    # Build what this side's process will build once, before anything binds: a bad vault key, TLS
    # pair or shared key stops here with one line. The API side never loads the keyring.
    if side == "api":
        served = api_process(settings, _internal_url(settings, None), secret)
    else:
        _check_keyring(settings)
        served = pci_process(settings, secret)
    try:
        key = ensure_sandbox_account(settings, served.services) if sandbox_account else None
    finally:
        served.close()
    try:
        listeners = Listeners(
            api=bind(settings.host, settings.api_port) if side != "pci" else None,
            pci=bind(settings.host, settings.pci_port) if side != "api" else None,
            internal=(
                bind(settings.internal_host, settings.internal_port) if side != "api" else None
            ),
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc.strerror}") from exc
    # Port 0 asks the kernel for a free port: report the ports actually bound.
    bound = (listeners.api, listeners.pci, listeners.internal)
    ports = [sock.getsockname()[1] if sock else None for sock in bound]
    write_ports(
        settings.data_dir,
        settings.host,
        api_port=ports[0],
        pci_port=ports[1],
        internal_port=ports[2],
    )
    url = _internal_url(settings, ports[2])
    lines = ["", "cardkeep sandbox" if key is not None else "cardkeep"]
    if ports[0] is not None:
        lines.append(f"  API listener: http://{settings.host}:{ports[0]}")
    if ports[1] is not None:
        lines.append(f"  PCI listener: http://{settings.host}:{ports[1]}")
    lines.append(f"  internal:     {url}" + (" (the PCI process's)" if side == "api" else ""))
    if key is not None:
        lines.append(f"  sandbox key:  {key}")
    click.echo("\n".join([*lines, ""]), err=True)
    run(settings, listeners, secret, url)


def _internal_url(settings: Settings, bound: int | None) -> str:
    """Where the API workers reach the internal listener: the port bound here, or (``--listener
    api``) CARDKEEP_INTERNAL_URL, by default the standard port on this host."""
    if bound is not None:
        host = settings.internal_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - only compared
        scheme = "https" if settings.internal_tls_cert is not None else "http"
        return f"{scheme}://{host}:{bound}"
    return settings.internal_url or f"http://127.0.0.1:{settings.internal_port}"


def _check_keyring(settings: Settings) -> None:
    """``serve`` with a prod account in the database refuses a keyring that is missing, inside
    the data directory or readable by others; without a configured one it warns that the
    generated sandbox keyring sits beside the data."""
    from cardkeep.bootstrap import check_prod_keyring, storage_for

    storage = storage_for(settings)
    try:
        check_prod_keyring(settings, storage)
    finally:
        storage.close()
    if settings.keyring_beside_data:
        click.echo(
            f"warning: no CARDKEEP_KEYRING configured: the vault's keyring is "
            f"{settings.data_dir / 'keyring.json'}, beside the data (sandbox only)",
            err=True,
        )


@main.command()
@data_dir_option
@database_url_option
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Apply pending database migrations."""
    from cardkeep.bootstrap import migrate as apply

    applied = apply(_settings(data_dir=data_dir, database_url=database_url))
    click.echo(f"applied migrations {applied}" if applied else "database is up to date", err=True)


@main.command()
@data_dir_option
@database_url_option
def sweep(data_dir: Path | None, database_url: str | None) -> None:
    """Run the sweeper once: persist due expiries and settle charges whose outcome was unknown."""
    from cardkeep.bootstrap import Runtime

    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        report = runtime.services.sweeper.run_once()
    click.echo(
        f"expired setup intents: {report.setup_intents}, payment intents: "
        f"{report.payment_intents}, recovered charges: {report.recovered_charges}",
        err=True,
    )


@main.command()
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=0),
    required=True,
    metavar="DAYS",
    help="Purge intents last changed at least this many days ago (on the account's clock).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@data_dir_option
@database_url_option
def purge(days: int, dry_run: bool, data_dir: Path | None, database_url: str | None) -> None:
    """Retention: scrub card, customer and address details from setup intents and payment
    intents in a final status last changed DAYS or more ago (ids, statuses, amounts and
    times stay: a Captured payment intent can still be refunded), delete vault cards no live
    setup intent holds, then checkpoint and truncate the SQLite WAL or VACUUM the PostgreSQL
    tables. Prints the counts."""
    from datetime import timedelta

    from cardkeep.bootstrap import purge as run_purge

    settings = _settings(data_dir=data_dir, database_url=database_url)
    report, database = run_purge(settings, timedelta(days=days), dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} setup intents: {report.setup_intents}")
    click.echo(f"{verb} payment intents: {report.payment_intents}")
    click.echo(f"{'would delete' if dry_run else 'deleted'} vault cards: {report.vault_cards}")
    if database is not None:
        click.echo(f"database: {database}", err=True)


@main.group()
def accounts() -> None:
    """Manage accounts and their secret keys."""


@accounts.command("create")
@click.argument("name")
@click.option(
    "--mode", type=click.Choice(["sandbox", "prod"]), default="sandbox", show_default=True
)
@data_dir_option
@database_url_option
def accounts_create(name: str, mode: str, data_dir: Path | None, database_url: str | None) -> None:
    """Create an account; prints only its secret key on stdout, once (the account and the key's
    id on stderr)."""
    from cardkeep.bootstrap import Runtime
    from cardkeep.bootstrap import migrate as apply

    settings = _settings(data_dir=data_dir, database_url=database_url)
    apply(settings)
    with Runtime.open(settings) as runtime:
        try:
            account, key_id, key = runtime.services.accounts.create(name, Mode(mode))
        except DomainError as exc:
            raise click.UsageError(exc.detail) from exc
    click.echo(f"created {account.mode.value} account {account.id} ({account.name})", err=True)
    click.echo(f"key id {key_id}", err=True)
    sys.stdout.write(key + "\n")


@accounts.command("list")
@data_dir_option
@database_url_option
def accounts_list(data_dir: Path | None, database_url: str | None) -> None:
    """List accounts: id, mode, name."""
    from cardkeep.bootstrap import Runtime

    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        for account in runtime.services.accounts.list():
            click.echo(f"{account.id}\t{account.mode.value}\t{account.name}")


@accounts.command("keys")
@click.argument("account_id")
@data_dir_option
@database_url_option
def accounts_keys(account_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """List the account's API keys, oldest first: key id, created at, and revoked at or
    "active". Never the secret keys (they are shown once, when made, and not stored)."""
    from cardkeep.bootstrap import Runtime

    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        try:
            keys = runtime.services.accounts.keys(account_id)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
    for key in keys:
        revoked = "active" if key.revoked_at is None else f"revoked {iso(key.revoked_at)}"
        click.echo(f"{key.id}\t{iso(key.created_at)}\t{revoked}")


@accounts.command("new-key")
@click.argument("account_id")
@data_dir_option
@database_url_option
def accounts_new_key(account_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Make another secret key for the account (its other keys keep working); prints only the
    secret key on stdout, once, and its key id on stderr, so KEY=$(cardkeep accounts new-key
    ACCOUNT) works."""
    from cardkeep.bootstrap import Runtime

    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        try:
            key_id, key = runtime.services.accounts.new_key(account_id)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
    click.echo(f"key id {key_id}", err=True)
    sys.stdout.write(key + "\n")


@accounts.command("revoke-key")
@click.argument("key", metavar="KEY_ID_OR_SECRET")
@data_dir_option
@database_url_option
def accounts_revoke_key(key: str, data_dir: Path | None, database_url: str | None) -> None:
    """Revoke an API key, named by its key id (key_...) or by the secret key itself. Once this
    returns, every request with the key is refused (401) by every cardkeep process on the
    database: none keeps keys in memory. Revoking a revoked key changes nothing. Prints the key
    id and when it was revoked."""
    from cardkeep.bootstrap import Runtime

    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        try:
            revoked = runtime.services.accounts.revoke_key(key)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
    assert revoked.revoked_at is not None
    click.echo(f"{revoked.id}\trevoked {iso(revoked.revoked_at)}")


@accounts.command("origins")
@click.argument("account_id")
@click.argument("origins", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove every origin the account lists.")
@data_dir_option
@database_url_option
def accounts_origins(
    account_id: str,
    origins: tuple[str, ...],
    clear: bool,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Show or set (replacing) the web origins allowed to frame the hosted card page and receive
    its outcome, e.g. https://shop.example.com. Prod accounts list https:// origins only; a
    sandbox account that lists none allows http://localhost and http://127.0.0.1 on any port.
    (The hosted page that uses them is not built yet.)"""
    from cardkeep.bootstrap import Runtime
    from cardkeep.domain.origins import effective

    if clear and origins:
        raise click.UsageError("give ORIGIN... or --clear, not both")
    with Runtime.open(_settings(data_dir=data_dir, database_url=database_url)) as runtime:
        accounts = runtime.services.accounts
        try:
            if origins or clear:
                accounts.set_origins(account_id, list(origins))
            account, listed = accounts.origins(account_id)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
    for origin in effective(listed, account.mode):
        click.echo(origin)
    if not listed and account.mode is Mode.SANDBOX:
        click.echo("(none set: the sandbox default)", err=True)


@main.group()
def webhooks() -> None:
    """Deliver webhooks, replay them, watch them go out."""


@webhooks.command("dispatch")
@data_dir_option
@database_url_option
def webhooks_dispatch(data_dir: Path | None, database_url: str | None) -> None:
    """Run a webhook dispatcher until Ctrl-C (every `serve` process runs one too; any number
    may run at once, on any host: deliveries are leased, so each attempt is made once)."""
    import asyncio
    import signal

    from cardkeep.bootstrap import storage_for
    from cardkeep.logs import configure
    from cardkeep.serve import dispatch_forever

    settings = _settings(data_dir=data_dir, database_url=database_url)
    configure(settings.log_level)
    storage = storage_for(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await dispatch_forever(settings, storage, stop)

    try:
        asyncio.run(run())
    finally:
        storage.close()


@webhooks.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option(
    "--failed-since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]),
    help="Replay every failed delivery whose last attempt was at or after TIME (UTC).",
)
@data_dir_option
@database_url_option
def webhooks_replay(
    delivery_ids: tuple[str, ...],
    failed_since: Any,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Send deliveries again: DELIVERY_ID..., or --failed-since TIME. Prints the re-queued ids."""
    from datetime import UTC

    if bool(delivery_ids) == (failed_since is not None):
        raise click.UsageError("give either DELIVERY_ID... or --failed-since TIME")
    settings = _settings(data_dir=data_dir, database_url=database_url)
    from cardkeep.bootstrap import Runtime

    with Runtime.open(settings) as runtime:
        hooks = runtime.services.webhooks
        try:
            if failed_since is not None:
                replayed = hooks.replay_failed_since(failed_since.replace(tzinfo=UTC))
            else:
                replayed = hooks.replay_ids(list(delivery_ids))
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
    for delivery in replayed:
        click.echo(delivery.id)
    click.echo(f"re-queued {len(replayed)} deliveries", err=True)


@webhooks.command("tail")
@click.option("--account", "account_id", help="Only this account's deliveries (acc_...).")
@click.option("--once", is_flag=True, help="Print the latest deliveries and stop.")
@click.option(
    "--interval", type=float, default=0.5, show_default=True, help="Seconds between polls."
)
@data_dir_option
@database_url_option
def webhooks_tail(
    account_id: str | None,
    once: bool,
    interval: float,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Print deliveries as they are made: one line each time a delivery is created or attempted
    (time, id, event, status, attempts, last answer). What did my endpoint get?"""
    import time

    settings = _settings(data_dir=data_dir, database_url=database_url)
    seen: dict[str, tuple[str, int]] = {}
    from cardkeep.bootstrap import Runtime

    with Runtime.open(settings) as runtime:
        hooks = runtime.services.webhooks
        try:
            while True:
                for d in reversed(hooks.recent(account_id)):
                    state = (d.status.value, d.attempts)
                    if seen.get(d.id) == state:
                        continue
                    seen[d.id] = state
                    answer = d.last_error or (
                        f"HTTP {d.last_response_status}" if d.last_response_status else "-"
                    )
                    when = iso(d.last_attempt_at or d.created_at)
                    click.echo(
                        f"{when}\t{d.id}\t{d.event}\t{d.status.value}\t{d.attempts}\t{answer}"
                    )
                if once:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


@main.group()
def audit() -> None:
    """Read the audit log: API keys made and revoked, refused keys, card numbers used."""


def _audit_line(entry: AuditEntry) -> str:
    detail = " ".join(f"{k}={v}" for k, v in sorted(entry.detail.items()))
    fields = [iso(entry.at), entry.actor, entry.action, entry.subject, entry.outcome]
    return "\t".join([*fields, str(entry.count), entry.account_id or "-", detail]).rstrip("\t")


@audit.command("tail")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="How many of the latest entries to print.",
)
@click.option("--follow", is_flag=True, help="Keep printing entries as they are appended.")
@click.option("--account", "account_id", help="Only this account's entries (acc_...).")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between polls."
)
@data_dir_option
@database_url_option
def audit_tail(
    limit: int,
    follow: bool,
    account_id: str | None,
    interval: float,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Print the last entries of the audit log, oldest first, one line each: time, actor,
    action, subject, outcome, count, account, details (masked card, last four, vault token;
    never a card number or a secret key). Authentication failures appear once their minute has
    closed, one line per key and minute with a count."""
    import time

    from cardkeep.bootstrap import Runtime

    settings = _settings(data_dir=data_dir, database_url=database_url)
    with Runtime.open(settings) as runtime:
        log = runtime.services.audit
        entries = log.tail(limit, account_id)
        cursor = entries[-1].seq if entries else 0
        try:
            while True:
                for entry in entries:
                    click.echo(_audit_line(entry))
                    cursor = entry.seq if entry.seq is not None else cursor
                if not follow:
                    return
                time.sleep(interval)
                entries = log.after(cursor or 0, account_id)
        except KeyboardInterrupt:
            return


@main.group()
def keys() -> None:
    """The vault's keys: KEKs in the keyring, data-encryption keys in the database."""


@contextlib.contextmanager
def _rotation(
    data_dir: Path | None, database_url: str | None, batch: int = 100
) -> Iterator[Rotation]:
    from cardkeep.bootstrap import storage_for, vault_for
    from cardkeep.cde.keys import KEY_FILE
    from cardkeep.cde.rotation import Rotation

    settings = _settings(data_dir=data_dir, database_url=database_url)
    storage = storage_for(settings)
    try:
        yield Rotation(
            storage,
            vault_for(settings, storage),
            legacy_file=settings.data_dir / KEY_FILE,
            batch=batch,
            pause=settings.rotation_pause,
            progress=lambda line: click.echo(line, err=True),
        )
    finally:
        storage.close()


@keys.command("list")
@data_dir_option
@database_url_option
def keys_list(data_dir: Path | None, database_url: str | None) -> None:
    """One line per key: id, type (kek, dek, legacy), status, and how many DEKs or cards use it.
    A DEK's status names its account and the KEK it is wrapped under. Never a key itself."""
    with _rotation(data_dir, database_url) as rotation:
        for use in rotation.list():
            click.echo("\t".join((use.key_id, use.kind, use.status, use.used_by)))


@keys.command("rotate")
@click.option(
    "--kek", "kek_id", help="Make this keyring KEK current and rewrap every DEK under it."
)
@click.option("--deks", is_flag=True, help="Give every account a new DEK; re-seal its cards.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Keys or cards per transaction.",
)
@data_dir_option
@database_url_option
def keys_rotate(
    kek_id: str | None,
    deks: bool,
    batch: int,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Rotate the vault's keys online, in batches (each its own transaction), while the service
    serves and charges; run it again to finish after a crash. CARDKEEP_ROTATION_PAUSE seconds
    are waited between batches."""
    if (kek_id is None) == (not deks):
        raise click.UsageError("give exactly one of --kek NEW_ID and --deks")
    with _rotation(data_dir, database_url, batch) as rotation:
        if kek_id is not None:
            report = rotation.rotate_kek(kek_id)
            click.echo(f"rewrapped {report.keys_rewrapped} data-encryption keys under {kek_id}")
            if not report.made_current:
                click.echo(
                    f"make {kek_id} current in CARDKEEP_KEYRING_JSON and restart (or SIGHUP) "
                    "every process, then run this again",
                    err=True,
                )
            return
        report = rotation.rotate_deks()
    click.echo(
        f"new data-encryption keys: {report.deks_made}, cards re-sealed: "
        f"{report.cards_resealed}, skipped (changed meanwhile): {report.cards_skipped}, "
        f"retired keys: {report.deks_retired}"
    )
    if report.cards_unreadable:
        raise click.ClickException(
            f"{report.cards_unreadable} cards could not be opened with the loaded keys and stay "
            "where they are"
        )


@keys.command("retire")
@click.argument("key_id")
@data_dir_option
@database_url_option
def keys_retire(key_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Retire a KEK (removed from the keyring file), a DEK (its wrapped key deleted) or the
    legacy vault key (vault.key deleted); refused while anything still uses it."""
    with _rotation(data_dir, database_url) as rotation:
        click.echo(rotation.retire(key_id))
