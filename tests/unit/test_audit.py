"""The audit log, in process: API keys made and revoked, each card number used for a verification
or a charge (in the transaction of the change), and refused keys counted per key and minute."""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import timedelta
from typing import Any

import pytest

from cardkeep.domain.audit import AuditEntry
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import Unauthorized, Unavailable
from cardkeep.domain.money import Money
from cardkeep.service import audit
from cardkeep.service.ports import ChargeOutcome, ChargeResult
from cardkeep.service.setup_intents import NewSetupIntent
from tests.fakes import ScriptedAcquirer
from tests.merchant import APPROVED_CARD, DECLINED_CARD
from tests.world import T0, World


def entries(world: World, action: str | None = None) -> list[AuditEntry]:
    return [e for e in world.storage.tables.audit if action is None or e.action == action]


def rows(world: World, action: str) -> list[tuple[Any, ...]]:
    return [(e.actor, e.subject, e.outcome, e.count) for e in entries(world, action)]


# -- the entry itself ------------------------------------------------------------------------------


def test_an_entry_never_holds_a_card_number() -> None:
    entry = AuditEntry(
        "aud_1",
        T0,
        f"x {APPROVED_CARD}",
        "card.charge",
        f"pi_a card {APPROVED_CARD}",
        "ok",
        detail={"note": f"card {APPROVED_CARD}"},
    )
    assert APPROVED_CARD not in repr(entry)
    assert entry.subject == "pi_a card 520000******1005"
    assert dict(entry.detail) == {"note": "card 520000******1005"}
    with pytest.raises(TypeError):
        entry.detail["note"] = "changed"  # type: ignore[index]
    with pytest.raises(ValueError, match="at least one"):
        AuditEntry("aud_2", T0, "cli", "a", "s", "ok", count=0)


# -- API keys --------------------------------------------------------------------------------------


def test_keys_made_and_revoked_are_audited_with_the_change() -> None:
    world = World()
    accounts = world.services.accounts
    key_id, _ = accounts.new_key(world.account.id)
    accounts.revoke_key(key_id)
    accounts.revoke_key(key_id)  # revoked already: nothing changes, nothing is recorded
    assert rows(world, "api_key.created") == [
        ("cli", world.key_id, "ok", 1),
        ("cli", key_id, "ok", 1),
    ]
    assert rows(world, "api_key.revoked") == [("cli", key_id, "ok", 1)]
    assert {e.account_id for e in entries(world)} == {world.account.id}
    assert all(e.at == T0 for e in entries(world))
    assert all(world.key not in str(e) for e in entries(world))


def test_a_key_that_was_not_stored_is_not_audited() -> None:
    world = World()
    before = len(entries(world))
    with pytest.raises(Exception, match="No account"):
        world.services.accounts.new_key("acc_nope")
    assert len(entries(world)) == before


# -- card numbers used -----------------------------------------------------------------------------


def _card_uses(world: World, action: str) -> list[tuple[Any, ...]]:
    return [
        (e.actor, e.subject, e.outcome, e.detail.get("last4"), e.detail.get("vault_token"))
        for e in entries(world, action)
    ]


def test_each_verification_of_the_pci_create_is_audited_with_its_setup_intent() -> None:
    world = World()
    approved = world.authorized()
    declined = world.authorized(DECLINED_CARD)
    expired = world.authorized(expiry=Expiry(1, 2020))
    si = world.services.setup_intents.get(world.account, approved)
    assert si.vault_token is not None
    actor = f"account:{world.account.id}"
    assert _card_uses(world, "card.authorization") == [
        (actor, approved, "approved", "1005", si.vault_token),
        (actor, declined, "declined", "0002", None),
        (actor, expired, "card_expired", "1005", None),
    ]
    first, _, last = entries(world, "card.authorization")
    assert first.detail["card"] == "520000******1005"
    assert "acquirer" in last.detail  # a card past its expiry is not sent
    for entry in entries(world):
        assert APPROVED_CARD not in str(entry)
        assert DECLINED_CARD not in str(entry)


def test_a_card_on_the_hosted_page_is_audited_as_the_page_of_its_setup_intent() -> None:
    world = World()
    cmd = NewSetupIntent("ref", "terms", "NoShow", intended_amount=Money(1000, "GBP"))
    si, secret = world.services.setup_intents.create(world.account, cmd)
    from cardkeep.cde.intake import CardInput
    from cardkeep.cde.pan import CardNumber, Cvv

    def card(pan: str) -> CardInput:
        return CardInput(CardNumber(pan), Expiry(12, 2030), Cvv("123", None), "A")

    world.intake.add_card(si.id, secret, card(DECLINED_CARD))
    world.intake.add_card(si.id, secret, card(APPROVED_CARD))
    token = world.services.setup_intents.get(world.account, si.id).vault_token
    assert _card_uses(world, "card.authorization") == [
        (f"page:{si.id}", si.id, "declined", "0002", None),
        (f"page:{si.id}", si.id, "approved", "1005", token),
    ]


def test_each_settled_charge_is_audited_with_its_payment_intent_and_token() -> None:
    declined = ChargeOutcome(ChargeResult.DECLINED, "Do not honour")
    world = World(acquirer=ScriptedAcquirer(answers=deque([declined])))
    si_id = world.authorized()
    token = world.services.setup_intents.get(world.account, si_id).vault_token
    pi_id = world.pi(si_id)
    pis = world.services.payment_intents
    assert pis.charge(world.account, pi_id).status == "Declined"
    assert pis.charge(world.account, pi_id).status == "Successful"
    actor = f"account:{world.account.id}"
    assert _card_uses(world, "card.charge") == [
        (actor, pi_id, "declined", "1005", token),
        (actor, pi_id, "approved", "1005", token),
    ]
    charged = entries(world, "card.charge")
    assert [e.detail["attempt"] for e in charged] == ["1", "2"]
    assert {e.detail["setup_intent"] for e in charged} == {si_id}
    assert {e.detail["amount"] for e in charged} == {"1000 GBP"}


def test_a_charge_settled_by_recovery_is_audited_as_the_system_and_only_once() -> None:
    unknown = ChargeOutcome(ChargeResult.UNKNOWN, "timed out")
    failed = ChargeOutcome(ChargeResult.FAILED, "error")
    acquirer = ScriptedAcquirer(answers=deque([unknown]))
    world = World(acquirer=acquirer)
    pi_id = world.pi(world.authorized())
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    assert entries(world, "card.charge") == []  # not settled: nothing to record yet
    acquirer.ledger[f"charge:{pi_id}:1"] = failed
    assert world.services.payment_intents.recover() == 1
    assert world.services.payment_intents.recover() == 0
    assert rows(world, "card.charge") == [("system", pi_id, "failed", 1)]


def test_a_card_expired_at_the_acquirer_is_audited_as_such() -> None:
    expired = ChargeOutcome(ChargeResult.CARD_EXPIRED, "Expired card")
    world = World(acquirer=ScriptedAcquirer(answers=deque([expired])))
    pi_id = world.pi(world.authorized())
    world.services.payment_intents.charge(world.account, pi_id)
    assert [e.outcome for e in entries(world, "card.charge")] == ["card_expired"]


# -- refused keys ----------------------------------------------------------------------------------


def test_refused_keys_in_one_minute_make_one_entry_each_with_their_count() -> None:
    world = World()
    accounts = world.services.accounts
    revoked_id, revoked = accounts.new_key(world.account.id)
    accounts.revoke_key(revoked_id)
    api, _ = world.clients("sk_sandbox_not-a-key")
    for _ in range(5):
        assert api.get("/payment-intents/pi_x").status_code == 401
    for _ in range(3):
        with pytest.raises(Unauthorized):
            accounts.authenticate(revoked)
    with pytest.raises(Unauthorized):
        accounts.authenticate("Bearer nonsense")
    world.advance(seconds=30)  # still the same minute: nothing written yet
    world.services.sweeper.run_once()
    assert entries(world, "auth.failed") == []
    world.advance(seconds=31)
    world.services.sweeper.run_once()
    unknown = "unknown:" + hashlib.sha256(b"sk_sandbox_not-a-key").hexdigest()[:12]
    other = "unknown:" + hashlib.sha256(b"Bearer nonsense").hexdigest()[:12]
    assert sorted(rows(world, "auth.failed")) == sorted(
        [
            (unknown, "authentication", "denied", 5),
            (f"key:{revoked_id}", "authentication", "denied", 3),
            (other, "authentication", "denied", 1),
        ]
    )
    failed = {e.actor: e for e in entries(world, "auth.failed")}
    assert failed[f"key:{revoked_id}"].account_id == world.account.id
    assert failed[unknown].account_id is None
    assert failed[unknown].at == T0  # the minute's start
    assert failed[unknown].detail == {"first": "2026-11-24T12:00:00.000000Z"} | {
        "last": "2026-11-24T12:00:00.000000Z"
    }
    assert all("not-a-key" not in str(e) and revoked not in str(e) for e in entries(world))
    world.advance(minutes=5)
    assert world.services.audit.flush_failures() == 0  # written once


def test_the_last_flush_writes_the_minute_still_open() -> None:
    world = World()
    for _ in range(2):
        with pytest.raises(Unauthorized):
            world.services.accounts.authenticate("sk_prod_wrong")
    assert world.services.audit.flush_failures() == 0
    assert world.services.audit.flush_failures(everything=True) == 1
    assert [e.count for e in entries(world, "auth.failed")] == [2]


def test_counts_whose_write_failed_are_kept_for_the_next_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    for minute in range(2):
        world.clock.now_value = T0 + timedelta(minutes=minute)
        with pytest.raises(Unauthorized):
            world.services.accounts.authenticate("sk_prod_wrong")
    storage = world.storage
    real = storage.transaction

    def down(*, write: bool) -> Any:
        raise Unavailable("the database is down", 1)

    monkeypatch.setattr(storage, "transaction", down)
    with pytest.raises(Unavailable):
        world.services.audit.flush_failures(everything=True)
    key = audit.unknown_key("sk_prod_wrong")
    world.failures.note(key, None, T0 + timedelta(seconds=10))  # one more, meanwhile
    monkeypatch.setattr(storage, "transaction", real)
    world.clock.now_value = T0 + timedelta(minutes=5)
    world.failures.note("unknown:x", None, T0)  # late-drained into the first minute too
    assert world.services.audit.flush_failures() == 3
    counts = sorted((e.at, e.actor, e.count) for e in entries(world, "auth.failed"))
    assert counts == [
        (T0, key, 2),
        (T0, "unknown:x", 1),
        (T0 + timedelta(minutes=1), key, 1),
    ]


def test_a_flood_of_unknown_keys_is_counted_under_one_entry_past_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit, "MAX_UNKNOWN_PER_MINUTE", 2)
    world = World()
    for n in range(5):
        with pytest.raises(Unauthorized):
            world.services.accounts.authenticate(f"sk_prod_{n}")
    with pytest.raises(Unauthorized):
        world.services.accounts.authenticate("sk_prod_0")  # has its own entry already
    world.advance(minutes=1)
    world.services.audit.flush_failures()
    counts = sorted((e.actor, e.count) for e in entries(world, "auth.failed"))
    assert counts == sorted(
        [
            (audit.unknown_key("sk_prod_0"), 2),
            (audit.unknown_key("sk_prod_1"), 1),
            ("unknown:others", 3),
        ]
    )
    # The cap is per minute: the next minute starts again.
    with pytest.raises(Unauthorized):
        world.services.accounts.authenticate("sk_prod_9")
    world.advance(minutes=1)
    world.services.audit.flush_failures()
    assert entries(world, "auth.failed")[-1].actor == audit.unknown_key("sk_prod_9")


def test_tail_reads_the_last_entries_and_after_a_cursor() -> None:
    world = World()
    accounts = world.services.accounts
    for _ in range(3):
        accounts.new_key(world.account.id)
    other, _, _ = accounts.create("other", world.account.mode)
    log = world.services.audit
    assert [e.action for e in log.tail(2)] == ["api_key.created", "api_key.created"]
    assert log.tail(2)[-1].account_id == other.id
    assert len(log.tail(100, account_id=world.account.id)) == 4
    assert log.tail(-1) == []
    first = log.tail(100)[0]
    assert first.seq is not None
    assert [e.id for e in log.after(first.seq)] == [e.id for e in log.tail(100)[1:]]
    assert log.after(first.seq, account_id=other.id) == log.tail(1)
