"""Shared test settings: the Hypothesis profile for CI, and a throwaway PostgreSQL database per
test process (created on first use, dropped at the end)."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.postgres import throwaway_database

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of this test process's own PostgreSQL database, migrated."""
    from cardkeep.storage import postgres

    with throwaway_database() as url:
        postgres.migrate(url)
        yield url
