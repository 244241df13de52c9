"""The migration that gave API keys their ids (sqlite ``0010_key_ids``, postgres ``0007_key_ids``),
over a database that holds keys already: each gets its own ``key_`` and 32 hex characters, keeps
its hash, dates and revocation, and the column is required and unique from then on."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from cardkeep.domain.account import Account, Mode
from cardkeep.service.ports import Storage
from cardkeep.storage import postgres, sqlite
from cardkeep.storage.codec import micros
from tests.factories import T0
from tests.integration.migration_steps import around, only

MIGRATED_ID = re.compile(r"key_[0-9a-f]{32}")
ACCOUNT = Account("acc_old", "old", Mode.SANDBOX, T0)
REVOKED_AT = micros(T0) + 60_000_000


def _legacy_keys(db: sqlite3.Connection | psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(
        "INSERT INTO accounts (id, name, mode, created_at_us) VALUES ('acc_old', 'old', 'sandbox',"
        f" {micros(T0)})"
    )
    db.execute(
        "INSERT INTO api_keys (key_hash, account_id, created_at_us, revoked_at_us) VALUES"
        f" ('hash_active', 'acc_old', {micros(T0)}, NULL),"
        f" ('hash_revoked', 'acc_old', {micros(T0)}, {REVOKED_AT})"
    )


def _check_upgraded(store: Storage) -> list[str]:
    with store.transaction(write=False) as uow:
        keys = uow.accounts.keys(ACCOUNT.id)
        active = uow.accounts.key_of_hash("hash_active")
        revoked = uow.accounts.key_of_hash("hash_revoked")
        assert uow.accounts.by_key_hash("hash_active") == ("hash_active", ACCOUNT)
        assert uow.accounts.by_key_hash("hash_revoked") is None
    assert active is not None
    assert revoked is not None
    ids = [k.id for k in keys]
    assert len(ids) == 2
    assert len(set(ids)) == 2
    assert all(MIGRATED_ID.fullmatch(i) for i in ids), ids
    assert (active.created_at, active.revoked_at) == (T0, None)
    assert revoked.revoked_at is not None
    assert micros(revoked.revoked_at) == REVOKED_AT
    # a migrated id names its key: revoking by it works like any other
    with store.transaction(write=True) as uow:
        uow.accounts.revoke_key(active.id, T0)
        uow.commit()
    with store.transaction(write=False) as uow:
        assert uow.accounts.by_key_hash("hash_active") is None
    return ids


def test_sqlite_migration_gives_earlier_keys_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    earlier, rest = around("sqlite", "key_ids")
    with only(monkeypatch, sqlite, earlier):
        assert sqlite.migrate(path) == [m.version for m in earlier]
    with sqlite3.connect(path) as db:
        _legacy_keys(db)
    assert sqlite.migrate(path) == rest
    store = sqlite.SqliteStorage(path)
    try:
        ids = _check_upgraded(store)
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        for row in (
            (None, "hash_new", "acc_old"),  # the id is required
            (ids[0], "hash_new", "acc_old"),  # and unique
            ("key_new", "hash_new", "acc_nobody"),  # the account must exist, as before
        ):
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(
                    "INSERT INTO api_keys (id, key_hash, account_id, created_at_us)"
                    " VALUES (?, ?, ?, 0)",
                    row,
                )
        indexes = {r[1] for r in db.execute("PRAGMA index_list(api_keys)")}
        assert "api_keys_account" in indexes


def test_postgres_migration_gives_earlier_keys_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.postgres import throwaway_database

    earlier, rest = around("postgres", "key_ids")
    with throwaway_database("mig") as url:
        with only(monkeypatch, postgres, earlier):
            assert postgres.migrate(url) == [m.version for m in earlier]
        with psycopg.connect(url, autocommit=True) as db:
            _legacy_keys(db)
        assert postgres.migrate(url) == rest
        store = postgres.PostgresStorage(url)
        try:
            ids = _check_upgraded(store)
        finally:
            store.close()
        with psycopg.connect(url, autocommit=True) as db:
            for row in ((None, "hash_new"), (ids[0], "hash_new")):
                with pytest.raises(psycopg.errors.IntegrityError):
                    db.execute(
                        "INSERT INTO api_keys (id, key_hash, account_id, created_at_us)"
                        " VALUES (%s, %s, 'acc_old', 0)",
                        row,
                    )
