"""The storage fixture: every contract test runs on SQLite (a real file), PostgreSQL (a database of
the local server, emptied per test) and the in-memory fake, with one sandbox account stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardkeep.domain.account import Account, Mode
from cardkeep.service.ports import Storage
from cardkeep.storage import postgres, sqlite
from cardkeep.storage.memory import MemoryStorage
from tests.factories import T0
from tests.postgres import empty

ACCOUNT = Account("acc_1", "one", Mode.SANDBOX, T0)


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store: Storage
    if request.param == "sqlite":
        path = tmp_path / "db.sqlite"
        sqlite.migrate(path)
        store = sqlite.SqliteStorage(path)
    elif request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        empty(url)
        store = postgres.PostgresStorage(url)
    else:
        store = MemoryStorage()
    with store.transaction(write=True) as uow:
        uow.accounts.add(ACCOUNT)
        uow.commit()
    yield store
    store.close()
