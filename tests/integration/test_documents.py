"""Stored documents: the committed golden document of every schema version still decodes to the
record it stood for, and a SQLite database from before the one timestamp encoding migrates with
its instants intact."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cardkeep.domain.attempts import AttemptType, AuthAttempt
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.setup_intent import ClientSecret, SetupIntent
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.storage import codec, sqlite
from cardkeep.storage.migrations import load
from tests.factories import CARD, T0, make_pi, make_si

GOLDEN = Path(__file__).parent / "golden"
NT = "sbxnt_0011223344556677"


def _attempt(card_nt: str | None) -> AuthAttempt:
    card = replace(CARD, network_transaction_id=card_nt)
    return AuthAttempt(
        "0b8f0d3e-6c8e-4a51-9a07-5c6b0e2f4a11",
        T0,
        AttemptType.AUTHORIZED,
        "AUTHORISED",
        "123456",
        card,
    )


def _setup_intent(nt: str | None) -> SetupIntent:
    attempt = _attempt(nt)
    return make_si(
        SI.AUTHORIZED,
        card=replace(CARD, network_transaction_id=nt),
        intended_amount=Money(1000, "GBP"),
        description="d",
        extras={"metadata": {"a": "1"}, "customer": {"emailAddress": "a@example.com"}},
        payment_details=attempt,
        setup_events=(attempt,),
        secret=ClientSecret("ab" * 32, T0, T0 + timedelta(minutes=30), False, 2),
    )


PURGED_AT = T0 + timedelta(days=400)


def test_golden_setup_intents_of_every_version_decode() -> None:
    v3 = (GOLDEN / "setup_intent_v3.json").read_bytes()
    assert v3.startswith(b'{"v":3,')
    purged = replace(_setup_intent(NT), purged_at=PURGED_AT)
    assert codec.decode_si(v3) == purged
    assert codec.encode(purged) + b"\n" == v3  # the current shape is version 3's
    v2 = (GOLDEN / "setup_intent_v2.json").read_bytes()
    assert v2.startswith(b'{"v":2,')
    assert codec.decode_si(v2) == _setup_intent(NT)
    assert codec.decode_si((GOLDEN / "setup_intent_v1.json").read_bytes()) == _setup_intent(NT)
    assert codec.decode_si((GOLDEN / "setup_intent_v0.json").read_bytes()) == _setup_intent(None)


def test_golden_payment_intents_of_every_version_decode() -> None:
    declined = replace(_attempt(NT), event_type=AttemptType.DECLINED, message="Do not honour")
    declined = replace(declined, auth_code=None)
    pending = replace(_attempt(NT), event_type=AttemptType.UNKNOWN, message="unknown")
    v1 = make_pi(
        PI.CHARGING,
        payment_events=(declined,),
        claimed_at=T0,
        charge_attempts=2,
        pending_attempt=replace(pending, auth_code=None),
        extras={"itemLines": []},
        description="x",
    )
    assert codec.decode_pi((GOLDEN / "payment_intent_v1.json").read_bytes()) == v1
    v2 = replace(v1, attempt_request="0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    raw = (GOLDEN / "payment_intent_v2.json").read_bytes()
    assert codec.decode_pi(raw) == v2
    v3 = replace(v2, purged_at=PURGED_AT)
    raw = (GOLDEN / "payment_intent_v3.json").read_bytes()
    assert raw.startswith(b'{"v":3,')
    assert codec.decode_pi(raw) == v3
    assert codec.encode(v3) + b"\n" == raw  # the current shape is version 3's
    old = codec.decode_pi((GOLDEN / "payment_intent_v0.json").read_bytes())
    assert old.status is PI.CREATED
    assert old.charge_attempts == 0
    assert old.pending_attempt is None
    assert old.payment_events[0].card is not None
    assert old.payment_events[0].card.network_transaction_id is None


def test_a_database_from_before_the_timestamp_migration_keeps_its_instants(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for mig in load("sqlite")[:3]:
        for statement in sqlite._statements(mig.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (mig.version, mig.name))
    conn.execute(
        "INSERT INTO accounts (id, name, mode, created_at) VALUES "
        "('acc_1', 'one', 'sandbox', '2026-11-24T12:00:00.123456+00:00'),"
        "('acc_2', 'two', 'prod', '2026-11-25T08:30:00+00:00')"
    )
    conn.execute(
        "INSERT INTO api_keys (key_hash, account_id, created_at) VALUES "
        "('h', 'acc_1', '2026-11-24T12:00:00.123456+00:00')"
    )
    conn.execute(
        "INSERT INTO outbox (id, account_id, event, created_at, payload) VALUES "
        "('evt_1', 'acc_1', 'setup_intent.created', '2026-11-24T12:00:00.500000Z', x'7b7d')"
    )
    conn.close()
    assert sqlite.migrate(path) == [m.version for m in load("sqlite")[3:]]
    store = sqlite.SqliteStorage(path)
    try:
        with store.transaction(write=False) as uow:
            accounts = {a.id: a.created_at for a in uow.accounts.list()}
            found = uow.accounts.by_key_hash("h")
    finally:
        store.close()
    assert accounts == {
        "acc_1": datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC),
        "acc_2": datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
    }
    assert found is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT created_at_us FROM outbox").fetchone()[0] == codec.micros(
            datetime(2026, 11, 24, 12, 0, 0, 500000, tzinfo=UTC)
        )
