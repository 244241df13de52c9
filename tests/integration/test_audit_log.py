"""The audit log's storage (``UnitOfWork.audit``) on SQLite, PostgreSQL and the in-memory fake, and
its append-only triggers, tried through plain SQL on each engine."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from cardkeep.domain.audit import AuditEntry
from cardkeep.domain.errors import Conflict
from cardkeep.service.ports import Storage
from cardkeep.storage import sqlite
from tests.factories import T0
from tests.integration.conftest import ACCOUNT
from tests.postgres import empty


def entry(n: int, account_id: str | None = ACCOUNT.id, **changes: object) -> AuditEntry:
    fields: dict[str, object] = {
        "id": f"aud_{n}",
        "at": T0 + timedelta(seconds=n),
        "actor": "cli",
        "action": "api_key.created",
        "subject": f"key_{n}",
        "outcome": "ok",
        "account_id": account_id,
    }
    fields.update(changes)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def test_entries_come_back_in_append_order_with_every_field(storage: Storage) -> None:
    detailed = entry(
        1,
        action="auth.failed",
        count=7,
        detail={"card": "520000******1005", "vault_token": "vt_1"},
    )
    with storage.transaction(write=True) as uow:
        uow.audit.append(detailed)
        uow.audit.append(entry(2, account_id=None))
        uow.audit.append(entry(3, account_id="acc_other"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        got = uow.audit.recent(10)
    assert [e.id for e in got] == ["aud_1", "aud_2", "aud_3"]
    seqs = [e.seq for e in got]
    assert all(s is not None for s in seqs)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    first = got[0]
    assert (first.at, first.actor, first.action, first.subject, first.outcome) == (
        T0 + timedelta(seconds=1),
        "cli",
        "auth.failed",
        "key_1",
        "ok",
    )
    assert (first.account_id, first.count) == (ACCOUNT.id, 7)
    assert dict(first.detail) == {"card": "520000******1005", "vault_token": "vt_1"}
    assert got[1].account_id is None


def test_recent_is_the_last_n_oldest_first_and_after_is_a_cursor(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        for n in range(1, 7):
            uow.audit.append(entry(n, account_id=ACCOUNT.id if n % 2 else "acc_other"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        last3 = uow.audit.recent(3)
        assert [e.id for e in last3] == ["aud_4", "aud_5", "aud_6"]
        assert [e.id for e in uow.audit.recent(2, account_id=ACCOUNT.id)] == ["aud_3", "aud_5"]
        assert uow.audit.recent(0) == []
        cursor = last3[0].seq
        assert cursor is not None
        assert [e.id for e in uow.audit.recent(10, after=cursor)] == ["aud_5", "aud_6"]
        assert [e.id for e in uow.audit.recent(1, after=cursor)] == ["aud_5"]
        mine = uow.audit.recent(10, after=cursor, account_id=ACCOUNT.id)
        assert [e.id for e in mine] == ["aud_5"]
        assert uow.audit.recent(10, after=uow.audit.recent(1)[0].seq) == []


def test_a_rolled_back_transaction_leaves_no_entry(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.audit.append(entry(1))  # no commit
    with storage.transaction(write=False) as uow:
        assert uow.audit.recent(10) == []


def test_an_entry_id_is_stored_once(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.audit.append(entry(1))
        uow.commit()
    with pytest.raises(Conflict), storage.transaction(write=True) as uow:
        uow.audit.append(entry(1, subject="key_other"))
        uow.commit()
    with storage.transaction(write=False) as uow:
        assert [e.subject for e in uow.audit.recent(10)] == ["key_1"]


def _one_row(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        uow.audit.append(entry(1))
        uow.commit()


def test_sqlite_refuses_update_and_delete_of_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite.migrate(path)
    store = sqlite.SqliteStorage(path)
    try:
        _one_row(store)
    finally:
        store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in (
            "UPDATE audit_log SET outcome = 'denied'",
            "UPDATE audit_log SET count = 2 WHERE id = 'aud_1'",
            "DELETE FROM audit_log",
            "DELETE FROM audit_log WHERE id = 'aud_1'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="audit_log is append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT id, outcome, count FROM audit_log").fetchall() == [
            ("aud_1", "ok", 1)
        ]
        conn.execute(
            "INSERT INTO audit_log (id, at_us, actor, action, subject, outcome)"
            " VALUES ('aud_2', 0, 'cli', 'a', 's', 'ok')"
        )
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (2,)
    finally:
        conn.close()


def test_postgres_refuses_update_and_delete_of_an_entry_and_truncate_empties_it(
    pg_database: str,
) -> None:
    from cardkeep.storage import postgres

    empty(pg_database)
    store = postgres.PostgresStorage(pg_database)
    try:
        _one_row(store)
    finally:
        store.close()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_log SET outcome = 'denied'",
            "UPDATE audit_log SET count = 2 WHERE id = 'aud_1'",
            "DELETE FROM audit_log",
            "DELETE FROM audit_log WHERE id = 'aud_1'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        rows = conn.execute("SELECT id, outcome, count FROM audit_log").fetchall()
        assert rows == [("aud_1", "ok", 1)]
    # The test helper's TRUNCATE (no row triggers fire) still empties it between tests.
    empty(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
