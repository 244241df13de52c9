"""Fixtures: one real cardkeep server per test process and engine, a fresh account per test, and
a database of each engine for tests that start servers of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Merchant, Server, run_server
from tests.postgres import throwaway_database

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=ENGINES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(f"cardkeep-{request.param}")
    if request.param == "sqlite":
        with run_server(data_dir) as srv:
            yield srv
        return
    with throwaway_database("e2e") as url, run_server(data_dir, database_url=url) as srv:
        yield srv


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For a test that starts its own servers: None (SQLite in its data directory), or the URL of
    a new PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    with throwaway_database("e2e") as url:
        yield url


@pytest.fixture
def merchant(server: Server) -> Iterator[Merchant]:
    m = Merchant(server, server.create_account())
    yield m
    m.close()


@pytest.fixture
def other_merchant(server: Server) -> Iterator[Merchant]:
    m = Merchant(server, server.create_account("other"))
    yield m
    m.close()
