"""Upgrade tests' helpers: run a database's migrations up to the one before a named migration,
then the rest, as an older release's database meets a newer one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cardkeep.storage.migrations import Migration
from cardkeep.storage.migrations import load as load_migrations


def around(engine: str, name: str) -> tuple[list[Migration], list[int]]:
    """The migrations before the one called ``name``, and the versions from it on."""
    every = load_migrations(engine)
    index = next(i for i, m in enumerate(every) if m.name == name)
    return every[:index], [m.version for m in every[index:]]


@contextmanager
def only(
    monkeypatch: pytest.MonkeyPatch, module: object, migrations: list[Migration]
) -> Iterator[None]:
    """While inside, ``module`` (an engine) applies just ``migrations``."""
    with monkeypatch.context() as patch:
        patch.setattr(module, "load_migrations", lambda _engine: migrations)
        yield
