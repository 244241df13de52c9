"""Settings: one frozen object built once from flags and ``CARDKEEP_*`` environment variables.

Secrets (the vault key) are masked in ``repr``. Nothing reads the environment anywhere else.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cardkeep.keyfiles import exposure

DEFAULT_SCHEMES = ("VISA", "MASTERCARD", "MAESTRO", "DISCOVER", "DCI")
ALL_SCHEMES = frozenset({*DEFAULT_SCHEMES, "AMEX"})
LOG_LEVELS = ("debug", "info", "warning", "error")


_SECRET_FIELDS = (
    "vault_key",
    "keyring_json",
    "idempotency_key",
    "webhook_key",
    "fingerprint_key",
    "internal_secret",
)

# What ``serve`` runs: both sides as separate processes under one supervisor (``all``), or one side
# of a split deployment (``api``: the API workers; ``pci``: the PCI process).
LISTENERS = ("all", "api", "pci")
# Settings an API worker never receives, nor their environment variables: key material and where it
# lives (the vault's keyring, the legacy vault key, the card fingerprints' key, the internal
# listener's TLS private key).
KEY_FIELDS = ("keyring", "keyring_json", "vault_key", "fingerprint_key", "internal_tls_key")
KEY_ENV = (
    "CARDKEEP_KEYRING",
    "CARDKEEP_KEYRING_JSON",
    "CARDKEEP_VAULT_KEY",
    "CARDKEEP_FINGERPRINT_KEY",
    "CARDKEEP_INTERNAL_TLS_KEY",
)
MIN_INTERNAL_SECRET = 32


class SettingsError(ValueError):
    """A setting is missing or not valid; the message says which and why."""


@dataclass(frozen=True)
class Database:
    """A parsed database URL: the engine, and the file (SQLite) or the URL (PostgreSQL)."""

    engine: str
    path: Path | None = None
    url: str | None = field(default=None, repr=False)  # may carry a password

    @classmethod
    def parse(cls, url: str | None, data_dir: Path) -> Database:
        if url is None:
            return cls("sqlite", data_dir / "cardkeep.db")
        if url.startswith("sqlite:///"):
            return cls("sqlite", Path(url[len("sqlite:///") :]))
        if url.startswith(("postgres://", "postgresql://")):
            return cls("postgresql", url=url)
        raise SettingsError(f"unsupported database URL scheme in {url.split(':', 1)[0]!r}")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str | None = None
    host: str = "127.0.0.1"
    api_port: int = 8000
    pci_port: int = 8001
    workers: int = 1
    # The process model: ``listener`` (LISTENERS); the PCI process's internal listener (the API
    # workers' only way to a card), the URL the API workers reach it at (``--listener api``; else
    # the bound internal port), and the secret both sides share (CARDKEEP_INTERNAL_SECRET, or a
    # 0600 file CARDKEEP_INTERNAL_SECRET_FILE; ``serve`` makes one per start when both sides run
    # under it and none is configured).
    listener: str = "all"
    internal_host: str = "127.0.0.1"
    internal_port: int = 8002
    internal_url: str | None = None
    internal_secret: str | None = field(default=None, repr=False)
    # TLS on the internal hop: the PCI process serves the internal listener over TLS with this
    # certificate and key (PEM; the key 0600); the API side trusts CARDKEEP_INTERNAL_CA_FILE, or,
    # under one supervisor without one, exactly the certificate the PCI process serves.
    internal_tls_cert: Path | None = None
    internal_tls_key: Path | None = None
    internal_ca_file: Path | None = None
    currencies: frozenset[str] = frozenset({"GBP", "EUR"})
    card_schemes: tuple[str, ...] = DEFAULT_SCHEMES
    # The vault's keyring (key-encryption keys): a file (CARDKEEP_KEYRING) or the same JSON inline
    # (CARDKEEP_KEYRING_JSON); without either, ``<data dir>/keyring.json`` (sandbox only). The
    # legacy single vault key (``vault.key``, CARDKEEP_VAULT_KEY) opens cards sealed before
    # envelope encryption. Seconds to wait between the batches of a key rotation.
    keyring: Path | None = None
    keyring_json: str | None = field(default=None, repr=False)
    vault_key: str | None = field(default=None, repr=False)
    rotation_pause: float = 0.0
    idempotency_key: str | None = field(default=None, repr=False)
    allow_prod_on_sandbox_acquirer: bool = False
    sweep_interval: float = 5.0
    recovery_after: float = 30.0
    # How long a running Idempotency-Key holds off retries of its request (real time): a retry
    # after the process running it died waits this long before it runs.
    idempotency_lease: float = 60.0
    # The hard timeout of an acquirer call (real time); must be shorter than recovery_after, so
    # recovery never re-sends while the first call may still be in flight. None: the default.
    acquirer_timeout: float | None = None
    # PostgreSQL: connections per process, and how long to wait to connect (or for a free
    # connection) and for any one statement, in seconds.
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_connect_timeout: float = 5.0
    db_statement_timeout: float = 5.0
    # The HTTP edge (``http_server``): seconds a connection has to send a request's line and
    # headers (from the connection's start or the end of the previous response), seconds an idle
    # keep-alive connection is kept, and the open connections of one process over both listeners.
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    log_level: str = "info"
    # Webhooks: the key that seals subscription secrets (else ``<data dir>/webhook.key``), the
    # networks deliveries may reach although internal, a CA file for prod deliveries, how often
    # the dispatcher looks for due deliveries, and how long delivered rows and events are kept.
    webhook_key: str | None = field(default=None, repr=False)
    webhook_allow: tuple[str, ...] = ()
    webhook_ca_file: str | None = None
    dispatch_interval: float = 1.0
    webhook_retention_days: int = 30
    # Card-testing defence: the key of card fingerprints (else ``<data dir>/fingerprint.key``),
    # the sliding window in seconds (real time), and the limits within it (0 turns one off):
    # failed card attempts per account and per setup intent paid with a client session secret,
    # distinct cards per such setup intent, approved card entries per account.
    fingerprint_key: str | None = field(default=None, repr=False)
    limit_window: float = 600.0
    limit_failed_per_account: int = 1000
    limit_failed_per_secret: int = 5
    limit_cards_per_secret: int = 3
    limit_approved_per_account: int = 0

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'***' if k in _SECRET_FIELDS and v else v!r}" for k, v in self.__dict__.items()
        )
        return f"Settings({shown})"

    @property
    def effective_acquirer_timeout(self) -> float:
        """10 s, or half the recovery delay when that is shorter (test servers recover fast)."""
        if self.acquirer_timeout is not None:
            return self.acquirer_timeout
        return min(10.0, self.recovery_after / 2)

    @property
    def database(self) -> Database:
        """The database the URL names (default: SQLite in the data directory)."""
        return Database.parse(self.database_url, self.data_dir)

    @property
    def keyring_beside_data(self) -> bool:
        """No keyring configured: the vault's is ``<data dir>/keyring.json`` (sandbox only)."""
        return self.keyring is None and not self.keyring_json

    def without_keys(self) -> Settings:
        """These settings as an API worker gets them: no key material, no path to any."""
        no_keys: dict[str, Any] = dict.fromkeys(KEY_FIELDS)
        return replace(self, **no_keys)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _csv(value: str) -> list[str]:
    return [part.strip().upper() for part in value.split(",") if part.strip()]


def _networks(text: str) -> tuple[str, ...]:
    nets = []
    for part in text.split(","):
        if part.strip():
            try:
                nets.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError as exc:
                raise SettingsError(
                    f"CARDKEEP_WEBHOOK_ALLOW: {part.strip()!r} is not a network (e.g. 10.0.0.0/8)"
                ) from exc
    return tuple(nets)


_LIMITS = (
    ("limit_failed_per_account", "LIMIT_FAILED_PER_ACCOUNT"),
    ("limit_failed_per_secret", "LIMIT_FAILED_PER_SECRET"),
    ("limit_cards_per_secret", "LIMIT_CARDS_PER_SECRET"),
    ("limit_approved_per_account", "LIMIT_APPROVED_PER_ACCOUNT"),
)
MAX_LIMIT = 1_000_000
MAX_LIMIT_WINDOW = 86_400


def _limits(env: Mapping[str, str]) -> dict[str, Any]:
    """The card-testing limits: whole numbers (0 turns a limit off) and a window in seconds."""
    changes: dict[str, Any] = {}
    for key, name in _LIMITS:
        raw = env.get(f"CARDKEEP_{name}")
        if raw is not None:
            if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_LIMIT:
                raise SettingsError(
                    f"CARDKEEP_{name} must be a whole number from 0 (no limit) to {MAX_LIMIT}"
                )
            changes[key] = int(raw)
    raw = env.get("CARDKEEP_LIMIT_WINDOW")
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT_WINDOW:
            raise SettingsError(
                f"CARDKEEP_LIMIT_WINDOW must be a whole number of seconds from 1 to "
                f"{MAX_LIMIT_WINDOW}"
            )
        changes["limit_window"] = float(raw)
    return changes


def _secret_file(path: Path) -> str:
    """The internal secret kept in a file its owner alone can read."""
    try:
        exposed = exposure(path)
        text = path.read_text("utf-8").strip()
    except OSError as exc:
        raise SettingsError(
            f"CARDKEEP_INTERNAL_SECRET_FILE: cannot read {path}: {exc.strerror}"
        ) from exc
    if exposed:
        raise SettingsError(f"CARDKEEP_INTERNAL_SECRET_FILE: {path} {exposed}")
    return text


def check_internal_secret(secret: str, source: str) -> str:
    if len(secret) < MIN_INTERNAL_SECRET or not secret.isascii() or not secret.isprintable():
        raise SettingsError(
            f"{source} must be at least {MIN_INTERNAL_SECRET} printable ASCII characters "
            "(e.g. the output of: openssl rand -base64 32)"
        )
    return secret


def _internal(env: Mapping[str, str]) -> dict[str, Any]:
    """The internal hop: its URL, and its secret from the environment or a 0600 file."""
    changes: dict[str, Any] = {}
    if env.get("CARDKEEP_INTERNAL_HOST"):
        changes["internal_host"] = env["CARDKEEP_INTERNAL_HOST"]
    url = env.get("CARDKEEP_INTERNAL_URL")
    if url:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(
                "CARDKEEP_INTERNAL_URL must be an http:// or https:// URL of the PCI process's "
                "internal listener, e.g. http://10.0.0.5:8002"
            )
        changes["internal_url"] = url.rstrip("/")
    changes |= _internal_tls(env)
    secret, path = env.get("CARDKEEP_INTERNAL_SECRET"), env.get("CARDKEEP_INTERNAL_SECRET_FILE")
    if secret and path:
        raise SettingsError(
            "set CARDKEEP_INTERNAL_SECRET or CARDKEEP_INTERNAL_SECRET_FILE, not both"
        )
    if secret:
        changes["internal_secret"] = check_internal_secret(secret, "CARDKEEP_INTERNAL_SECRET")
    elif path:
        changes["internal_secret"] = check_internal_secret(
            _secret_file(Path(path)), f"the internal secret in {path}"
        )
    return changes


def _internal_tls(env: Mapping[str, str]) -> dict[str, Any]:
    """The internal listener's certificate and key (both or neither; the key its owner's alone),
    and the CA file the API side verifies it with."""
    cert, key = env.get("CARDKEEP_INTERNAL_TLS_CERT"), env.get("CARDKEEP_INTERNAL_TLS_KEY")
    if bool(cert) != bool(key):
        raise SettingsError(
            "set both CARDKEEP_INTERNAL_TLS_CERT and CARDKEEP_INTERNAL_TLS_KEY (PEM files), or "
            "neither"
        )
    changes: dict[str, Any] = {}
    for name, value, field_name in (
        ("CARDKEEP_INTERNAL_TLS_CERT", cert, "internal_tls_cert"),
        ("CARDKEEP_INTERNAL_TLS_KEY", key, "internal_tls_key"),
        ("CARDKEEP_INTERNAL_CA_FILE", env.get("CARDKEEP_INTERNAL_CA_FILE"), "internal_ca_file"),
    ):
        if not value:
            continue
        path = Path(value)
        if not path.is_file():
            raise SettingsError(f"{name}: no such file {value}")
        changes[field_name] = path
    if key:
        exposed = exposure(Path(key))
        if exposed:
            raise SettingsError(f"CARDKEEP_INTERNAL_TLS_KEY: {key} {exposed}")
    return changes


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    s = Settings()
    changes: dict[str, Any] = {}
    if "CARDKEEP_DATA_DIR" in env:
        changes["data_dir"] = Path(env["CARDKEEP_DATA_DIR"])
    if "CARDKEEP_DATABASE_URL" in env:
        changes["database_url"] = env["CARDKEEP_DATABASE_URL"]
    if "CARDKEEP_CURRENCIES" in env:
        currencies = _csv(env["CARDKEEP_CURRENCIES"])
        if not currencies or any(len(c) != 3 or not c.isalpha() for c in currencies):
            raise SettingsError("CARDKEEP_CURRENCIES must be ISO 4217 codes, e.g. GBP,EUR,USD")
        changes["currencies"] = frozenset(currencies)
    if "CARDKEEP_CARD_SCHEMES" in env:
        schemes = _csv(env["CARDKEEP_CARD_SCHEMES"])
        unknown = set(schemes) - ALL_SCHEMES
        if not schemes or unknown:
            raise SettingsError(f"CARDKEEP_CARD_SCHEMES: unknown schemes {sorted(unknown)}")
        changes["card_schemes"] = tuple(schemes)
    if env.get("CARDKEEP_VAULT_KEY"):
        changes["vault_key"] = env["CARDKEEP_VAULT_KEY"]
    if env.get("CARDKEEP_KEYRING"):
        changes["keyring"] = Path(env["CARDKEEP_KEYRING"])
    if env.get("CARDKEEP_KEYRING_JSON"):
        changes["keyring_json"] = env["CARDKEEP_KEYRING_JSON"]
        if "keyring" in changes:
            raise SettingsError("set CARDKEEP_KEYRING or CARDKEEP_KEYRING_JSON, not both")
    raw_pause = env.get("CARDKEEP_ROTATION_PAUSE")
    if raw_pause is not None:
        try:
            changes["rotation_pause"] = float(raw_pause)
        except ValueError as exc:
            raise SettingsError("CARDKEEP_ROTATION_PAUSE must be a number of seconds") from exc
        if not 0 <= changes["rotation_pause"] <= 3600:
            raise SettingsError("CARDKEEP_ROTATION_PAUSE must be from 0 to 3600 seconds")
    if env.get("CARDKEEP_IDEMPOTENCY_KEY"):
        changes["idempotency_key"] = env["CARDKEEP_IDEMPOTENCY_KEY"]
    if env.get("CARDKEEP_WEBHOOK_KEY"):
        changes["webhook_key"] = env["CARDKEEP_WEBHOOK_KEY"]
    if env.get("CARDKEEP_FINGERPRINT_KEY"):
        changes["fingerprint_key"] = env["CARDKEEP_FINGERPRINT_KEY"]
    changes |= _limits(env)
    changes |= _internal(env)
    if "CARDKEEP_WEBHOOK_ALLOW" in env:
        changes["webhook_allow"] = _networks(env["CARDKEEP_WEBHOOK_ALLOW"])
    if env.get("CARDKEEP_WEBHOOK_CA_FILE"):
        ca_file = env["CARDKEEP_WEBHOOK_CA_FILE"]
        if not Path(ca_file).is_file():
            raise SettingsError(f"CARDKEEP_WEBHOOK_CA_FILE: no such file {ca_file}")
        changes["webhook_ca_file"] = ca_file
    if "CARDKEEP_WEBHOOK_RETENTION_DAYS" in env:
        days = env["CARDKEEP_WEBHOOK_RETENTION_DAYS"]
        if not days.isdigit() or int(days) < 1:
            raise SettingsError("CARDKEEP_WEBHOOK_RETENTION_DAYS must be a whole number of days")
        changes["webhook_retention_days"] = int(days)
    if env.get("CARDKEEP_ALLOW_PROD_ON_SANDBOX_ACQUIRER", "").lower() in ("1", "true", "yes"):
        changes["allow_prod_on_sandbox_acquirer"] = True
    numbers = (
        ("sweep_interval", "SWEEP_INTERVAL"),
        ("dispatch_interval", "DISPATCH_INTERVAL"),
        ("recovery_after", "RECOVERY_AFTER"),
        ("acquirer_timeout", "ACQUIRER_TIMEOUT"),
        ("idempotency_lease", "IDEMPOTENCY_LEASE"),
        ("db_connect_timeout", "DB_CONNECT_TIMEOUT"),
        ("db_statement_timeout", "DB_STATEMENT_TIMEOUT"),
        ("header_timeout", "HEADER_TIMEOUT"),
        ("keep_alive_timeout", "KEEP_ALIVE_TIMEOUT"),
    )
    for key, name in numbers:
        raw = env.get(f"CARDKEEP_{name}")
        if raw is not None:
            try:
                changes[key] = float(raw)
            except ValueError as exc:
                raise SettingsError(f"CARDKEEP_{name} must be a number of seconds") from exc
    if "CARDKEEP_LOG_LEVEL" in env:
        level = env["CARDKEEP_LOG_LEVEL"].lower()
        if level not in LOG_LEVELS:
            raise SettingsError(f"CARDKEEP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        changes["log_level"] = level
    for key, name in (("db_pool_min", "DB_POOL_MIN"), ("db_pool_max", "DB_POOL_MAX")):
        raw = env.get(f"CARDKEEP_{name}")
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 1000:
                raise SettingsError(f"CARDKEEP_{name} must be a whole number from 1 to 1000")
            changes[key] = int(raw)
    raw = env.get("CARDKEEP_MAX_CONNECTIONS")
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
            raise SettingsError("CARDKEEP_MAX_CONNECTIONS must be a whole number from 1 to 100000")
        changes["max_connections"] = int(raw)
    settings = replace(s, **changes)
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError("CARDKEEP_DB_POOL_MIN must not exceed CARDKEEP_DB_POOL_MAX")
    for key in (
        "sweep_interval",
        "recovery_after",
        "acquirer_timeout",
        "idempotency_lease",
        "db_connect_timeout",
        "db_statement_timeout",
        "header_timeout",
        "keep_alive_timeout",
    ):
        value = getattr(settings, key)
        if value is not None and not 0 < value < 86_400:
            raise SettingsError(f"CARDKEEP_{key.upper()} must be between 0 and 86400 seconds")
    if settings.effective_acquirer_timeout >= settings.recovery_after:
        raise SettingsError(
            "CARDKEEP_ACQUIRER_TIMEOUT must be shorter than CARDKEEP_RECOVERY_AFTER: recovery may "
            "re-send an attempt only once its first call can no longer be in flight"
        )
    return settings
