"""The sandbox acquirer's ledger on every engine: each entry's amount, capture key and kind are
stored and read back, the refund total per capture is the database's sum, concurrent refunds of one
capture never take it past its amount, and the migration that added the columns upgrades a
database that already holds charges."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from cardkeep.cde.acquirers.base import MitCharge, RefundCall
from cardkeep.cde.acquirers.ledger import Capture, StorageLedger
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.pan import CardNumber
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import Unavailable
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeResult, RefundOutcome, RefundResult, Storage
from cardkeep.storage import postgres, sqlite
from tests.integration.migration_steps import around, only
from tests.world import FixedClock

CAPTURE = "charge:pi_1:1"


def _charge(value: int, key: str = CAPTURE) -> MitCharge:
    card = CardNumber("5200000000001005")
    return MitCharge(Mode.SANDBOX, card, Expiry(12, 2030), Money(value, "GBP"), key, "nt_1", 10.0)


def _refund(value: int, key: str, kind: str = "refund") -> RefundCall:
    return RefundCall(Mode.SANDBOX, kind, Money(value, "GBP"), key, CAPTURE, 10.0)


def test_ledger_entries_keep_their_amount_capture_and_kind(storage: Storage) -> None:
    ledger = StorageLedger(storage, FixedClock())
    acquirer = SandboxAcquirer(ledger)
    assert acquirer.charge(_charge(12_345)).result is ChargeResult.APPROVED
    assert acquirer.refund(_refund(2000, "refund:rf_1:1")).result is RefundResult.APPROVED
    assert acquirer.refund(_refund(1051, "refund:rf_2:1")).result is RefundResult.DECLINED
    assert acquirer.refund(_refund(3000, "refund:rf_3:1", "reversal")).result is (
        RefundResult.APPROVED
    )
    assert acquirer.refund(_refund(1099, "refund:rf_4:1")).result is RefundResult.UNKNOWN
    with storage.transaction(write=False) as uow:
        rows = uow.sandbox_ledger  # type: ignore[attr-defined]
        charge = rows.get(CAPTURE)
        assert (charge[1], charge[6], charge[7], charge[8]) == ("approved", 12_345, None, "charge")
        assert charge[4] == "nt_1"
        got = {k: rows.get(k) for k in ("refund:rf_1:1", "refund:rf_2:1", "refund:rf_3:1")}
        assert [(r[1], r[2], r[3], r[4], r[6], r[7], r[8]) for r in got.values()] == [
            ("approved", "REFUNDED", None, None, 2000, CAPTURE, "refund"),
            ("declined", "Insufficient funds", None, None, 1051, CAPTURE, "refund"),
            ("approved", "REVERSED", None, None, 3000, CAPTURE, "reversal"),
        ]
        assert rows.refunded(CAPTURE, ("refund", "reversal"), "approved") == 2000 + 3000 + 1099
        assert rows.refunded(CAPTURE, ("reversal",), "approved") == 3000
        assert rows.refunded(CAPTURE, ("refund",), "declined") == 1051
        assert rows.refunded("charge:pi_other:1", ("refund", "reversal"), "approved") == 0
    assert ledger.capture(CAPTURE) == Capture(CAPTURE, 12_345)
    assert ledger.refunded(CAPTURE) == 6099


def _refund_until_done(acquirer: SandboxAcquirer, call: RefundCall) -> RefundOutcome:
    """As the service would: an exception (here a busy database) is asked about again."""
    for _ in range(50):
        try:
            return acquirer.refund_status(call)
        except Unavailable:
            continue
    raise AssertionError("the database stayed busy")


def test_concurrent_refunds_of_one_capture_never_exceed_it(storage: Storage) -> None:
    ledger = StorageLedger(storage, FixedClock())
    acquirer = SandboxAcquirer(ledger)
    assert acquirer.charge(_charge(10_000)).result is ChargeResult.APPROVED
    calls = [_refund(3000, f"refund:rf_{n}:1", "refund" if n % 2 else "reversal") for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda c: _refund_until_done(acquirer, c), calls))
    approved = [o for o in outcomes if o.result is RefundResult.APPROVED]
    assert len(approved) == 3
    assert {o.message for o in outcomes if o not in approved} == {"Amount exceeds the capture"}
    assert ledger.refunded(CAPTURE) == 9000
    # every re-send gets the answer that was recorded
    assert [acquirer.refund_status(c) for c in calls] == outcomes


# -- the migration that added the columns, over a database that holds charges already ------------


def _legacy_row(db: sqlite3.Connection | psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(
        "INSERT INTO sandbox_ledger (idempotency_key, result, message, auth_code,"
        " network_transaction_id, created_at_us) VALUES ('charge:pi_old:1', 'approved',"
        " 'DEPOSITED', '123456', 'nt_old', 0)"
    )


def _check_upgraded(store: Storage) -> None:
    with store.transaction(write=False) as uow:
        row = uow.sandbox_ledger.get("charge:pi_old:1")  # type: ignore[attr-defined]
    assert row[1:5] == ("approved", "DEPOSITED", "123456", "nt_old")
    assert row[6:] == (None, None, "charge")
    ledger = StorageLedger(store, FixedClock())
    assert ledger.capture("charge:pi_old:1") == Capture("charge:pi_old:1", None)
    # a charge from before amounts were kept can be refunded; only the amount is not checked
    call = RefundCall(
        Mode.SANDBOX, "refund", Money(500, "GBP"), "refund:rf_1:1", "charge:pi_old:1", 1
    )
    assert SandboxAcquirer(ledger).refund(call) == RefundOutcome(RefundResult.APPROVED, "REFUNDED")
    assert ledger.refunded("charge:pi_old:1") == 500


def test_sqlite_migration_gives_earlier_charges_a_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    earlier, rest = around("sqlite", "ledger_amounts")
    with only(monkeypatch, sqlite, earlier):
        assert sqlite.migrate(path) == [m.version for m in earlier]
    with sqlite3.connect(path) as db:
        _legacy_row(db)
    assert sqlite.migrate(path) == rest
    store = sqlite.SqliteStorage(path)
    try:
        _check_upgraded(store)
    finally:
        store.close()


def test_postgres_migration_gives_earlier_charges_a_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.postgres import throwaway_database

    earlier, rest = around("postgres", "ledger_amounts")
    with throwaway_database("mig") as url:
        with only(monkeypatch, postgres, earlier):
            assert postgres.migrate(url) == [m.version for m in earlier]
        with psycopg.connect(url, autocommit=True) as db:
            _legacy_row(db)
        assert postgres.migrate(url) == rest
        store = postgres.PostgresStorage(url)
        try:
            _check_upgraded(store)
        finally:
            store.close()
