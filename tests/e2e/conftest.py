"""Fixtures: one real cardkeep server per test process, and a fresh account per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Merchant, Server, run_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("cardkeep")) as srv:
        yield srv


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
