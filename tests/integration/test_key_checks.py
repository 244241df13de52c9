"""The check values of the keys every process on one database must share (service/key_checks.py),
on every storage (SQLite, PostgreSQL, memory): the first writer wins, a rollback keeps nothing, and
a process with another key is refused with the key's name and source, never the key."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from cardkeep.service.key_checks import KeyMismatch, check_shared_key, check_value
from cardkeep.service.ports import Storage
from cardkeep.storage import sqlite


def test_the_first_check_value_kept_is_the_one_that_stays(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        assert uow.key_checks.digest("webhook") is None
        uow.key_checks.record("webhook", "first")
        uow.key_checks.record("webhook", "second")
        uow.key_checks.record("idempotency", "other")
        uow.commit()
    with storage.transaction(write=True) as uow:
        uow.key_checks.record("webhook", "third")
        uow.key_checks.record("fingerprint", "rolled back")  # no commit
    with storage.transaction(write=False) as uow:
        assert uow.key_checks.digest("webhook") == "first"
        assert uow.key_checks.digest("idempotency") == "other"
        assert uow.key_checks.digest("fingerprint") is None


def test_a_process_with_another_key_is_refused_by_name_and_source(storage: Storage) -> None:
    mine, other = os.urandom(32), os.urandom(32)
    check_shared_key(storage, "idempotency", mine, "CARDKEEP_IDEMPOTENCY_KEY")
    check_shared_key(storage, "idempotency", mine, "/srv/a/idempotency.key")  # same key: fine
    check_shared_key(storage, "webhook", other, "CARDKEEP_WEBHOOK_KEY")  # each key on its own
    with pytest.raises(KeyMismatch) as refused:
        check_shared_key(storage, "idempotency", other, "/srv/b/idempotency.key")
    message = str(refused.value)
    assert "the idempotency key (/srv/b/idempotency.key)" in message
    assert "same key" in message
    for secret in (mine, other):
        assert secret.hex() not in message
        assert check_value("idempotency", secret) not in message
    with storage.transaction(write=False) as uow:
        assert uow.key_checks.digest("idempotency") == check_value("idempotency", mine)


def test_the_check_value_tells_keys_and_names_apart() -> None:
    key = os.urandom(32)
    assert check_value("webhook", key) == check_value("webhook", key)
    assert check_value("webhook", key) != check_value("idempotency", key)
    assert check_value("webhook", key) != check_value("webhook", os.urandom(32))
    assert key.hex() not in check_value("webhook", key)


def test_a_key_already_checked_is_only_read(tmp_path: Path) -> None:
    """Once the database keeps a key's check value, a start only reads it: it passes while
    another connection holds SQLite's write lock, where a write would fail (no busy wait here)."""
    path = tmp_path / "db.sqlite"
    sqlite.migrate(path)
    storage = sqlite.SqliteStorage(path, busy_timeout_ms=0)
    key = os.urandom(32)
    check_shared_key(storage, "webhook", key, "CARDKEEP_WEBHOOK_KEY")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        check_shared_key(storage, "webhook", key, "CARDKEEP_WEBHOOK_KEY")
        with pytest.raises(KeyMismatch):
            check_shared_key(storage, "webhook", os.urandom(32), "CARDKEEP_WEBHOOK_KEY")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        storage.close()
