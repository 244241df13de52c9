"""The retention purge's storage on every engine (SQLite, PostgreSQL, the fake): final intents
and vault rows read in batches by id, live ones left out, a purge written and read back, a
record changed meanwhile skipped; then the SQLite WAL truncated and PostgreSQL vacuumed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.setup_intent import HOLDS_CARD
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.ports import Storage
from cardkeep.service.retention import PurgeReport, Retention
from cardkeep.storage import postgres, sqlite
from tests.factories import CARD, T0, make_pi, make_si
from tests.integration.conftest import ACCOUNT
from tests.world import FixedClock

EXTRAS = {"customer": {"emailAddress": "kept.nowhere@example.com"}, "metadata": {"m": "1"}}


def _fill(storage: Storage) -> None:
    with storage.transaction(write=True) as uow:
        for n, status in enumerate(
            [SI.AUTHORIZED, SI.COMPLETED, SI.CLOSED, SI.CREATED, SI.EXPIRED]
        ):
            token = f"vt_{n}" if status is SI.AUTHORIZED else None
            uow.setup_intents.add(
                make_si(
                    status,
                    id_=f"si_{n}",
                    account_id=ACCOUNT.id,
                    card=replace(CARD, vault_token=token),
                    extras=EXTRAS,
                )
            )
        for n, status in enumerate([PI.CREATED, PI.CAPTURED, PI.CANCELED]):
            uow.payment_intents.add(
                make_pi(
                    status,
                    id_=f"pi_{n}",
                    account_id=ACCOUNT.id,
                    setup_intent_id="si_1",
                    extras=EXTRAS,
                )
            )
        for token in ("vt_0", "vt_1", "vt_9"):
            uow.vault.put((token, ACCOUNT.id, "k1", b"n" * 12, b"sealed", T0))  # type: ignore[attr-defined]
        uow.commit()


def test_batches_by_id_of_final_intents_and_of_vault_tokens(storage: Storage) -> None:
    _fill(storage)
    final = frozenset({SI.COMPLETED, SI.CLOSED, SI.EXPIRED})
    with storage.transaction(write=True) as uow:
        first = uow.retention.final_setup_intents(final, "", 2)
        rest = uow.retention.final_setup_intents(final, first[-1].id, 2)
        pis = uow.retention.final_payment_intents(frozenset({PI.CAPTURED, PI.CANCELED}), "", 10)
        tokens = uow.retention.vault_tokens("vt_0", 10)
        held = uow.retention.vault_tokens_held(HOLDS_CARD, "", 10)
    assert [s.id for s in first + rest] == ["si_1", "si_2", "si_4"]
    assert first[0].extras == EXTRAS  # decoded whole
    assert [p.id for p in pis] == ["pi_1", "pi_2"]
    assert tokens == ["vt_1", "vt_9"]
    assert held == [("si_0", "vt_0")]


def test_a_purge_on_every_engine(storage: Storage) -> None:
    _fill(storage)
    clock = FixedClock(T0 + timedelta(days=31))
    report = Retention(storage, clock, batch=2).purge(timedelta(days=30))
    assert report == PurgeReport(setup_intents=3, payment_intents=2, vault_cards=2)
    with storage.transaction(write=False) as uow:
        live = uow.setup_intents.get(ACCOUNT.id, "si_0")
        done = uow.setup_intents.get(ACCOUNT.id, "si_1")
        captured = uow.payment_intents.get(ACCOUNT.id, "pi_1")
        created = uow.payment_intents.get(ACCOUNT.id, "pi_0")
        assert uow.vault.holds("vt_0")
        assert not uow.vault.holds("vt_1")
        assert not uow.vault.holds("vt_9")
    assert live is not None
    assert live.card is not None
    assert live.extras == EXTRAS
    assert done is not None
    assert done.card is None
    assert done.extras == {"metadata": {"m": "1"}}
    assert done.purged_at == clock.now()
    assert captured is not None
    assert captured.purged_at == clock.now()
    assert captured.amount == make_pi(PI.CAPTURED).amount
    assert created is not None
    assert created.purged_at is None
    assert Retention(storage, clock).purge(timedelta(days=30)) == PurgeReport(0, 0, 0)


def test_the_sqlite_wal_is_truncated_after_a_purge(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite.migrate(path)
    store = sqlite.SqliteStorage(path)
    try:
        with store.transaction(write=True) as uow:
            uow.accounts.add(ACCOUNT)
            uow.commit()
        _fill(store)
        Retention(store, FixedClock(T0 + timedelta(days=31))).purge(timedelta(days=30))
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 0
        assert store.checkpoint()
        assert wal.stat().st_size == 0
        # Only the three live intents (si_0, si_3, pi_0) still hold it: no stale copy anywhere.
        assert path.read_bytes().count(b"kept.nowhere@example.com") == 3
    finally:
        store.close()


def test_postgres_vacuums_only_its_own_tables(pg_database: str) -> None:
    from tests.postgres import empty

    empty(pg_database)
    store = postgres.PostgresStorage(pg_database)
    try:
        store.vacuum(("setup_intents", "payment_intents", "vault_cards"))
        with pytest.raises(ValueError, match="pg_class"):
            store.vacuum(("pg_class",))
    finally:
        store.close()
