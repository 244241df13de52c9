"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth, user postgres):
each test run creates its own and drops it at the end, so runs never share state."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

SERVER = os.environ.get("CARDKEEP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
TABLES = (
    "sandbox_ledger",
    "outbox",
    "vault_cards",
    "payment_intents",
    "setup_intents",
    "api_keys",
    "accounts",
)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"the tests need PostgreSQL at {SERVER} (trust auth); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ) from exc


@contextmanager
def throwaway_database(label: str = "t") -> Iterator[str]:
    """A new, empty database; its URL. Dropped (connections and all) on the way out."""
    name = f"cardkeep_{label}_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty(url: str) -> None:
    """Delete every row of cardkeep's tables (the schema stays)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
