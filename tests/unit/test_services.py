"""Use cases on the in-memory storage fake and the sandbox acquirer: no sockets, no files."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest

from cardkeep.bootstrap import build_api
from cardkeep.cde.charger import VaultCharger
from cardkeep.cde.intake import CardInput
from cardkeep.cde.keys import Keyring, KeyringSource
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.cde.vault import Vault
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.account import Account, Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import (
    ChargeInProgress,
    ClientSecretExpired,
    ClientSecretInvalid,
    InvalidState,
    NotFound,
    SandboxOnly,
    SetupIntentNotUsable,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.payment_intents import NewPaymentIntent
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, ChargeResult
from cardkeep.service.setup_intents import NewSetupIntent
from tests.world import World


@pytest.fixture
def world() -> World:
    return World()


def events(world: World) -> list[tuple[str, str]]:
    return world.events()


def key(pi_id: str, attempt: int = 1) -> str:
    return f"charge:{pi_id}:{attempt}"


def test_authenticate_by_key_and_refuse_others(world: World) -> None:
    assert world.services.accounts.authenticate(world.key).id == world.account.id
    for bad in ("", "sk_sandbox_nope", world.key + "x", "pk_" + world.key):
        with pytest.raises(Unauthorized):
            world.services.accounts.authenticate(bad)


def test_charge_moves_both_and_records_events(world: World) -> None:
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    answer = world.services.payment_intents.charge(world.account, pi_id)
    assert (answer.status, answer.message) == ("Successful", "DEPOSITED")
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CAPTURED
    assert world.services.setup_intents.get(world.account, si_id).status is SI.COMPLETED
    assert events(world)[-2:] == [
        ("payment_intent.status_updated", "Captured"),
        ("setup_intent.status_updated", "Completed"),
    ]
    assert world.acquirer.times_sent(key(pi_id)) == 1
    with pytest.raises(InvalidState):
        world.services.payment_intents.charge(world.account, pi_id)
    assert world.acquirer.times_sent(key(pi_id)) == 1


def test_declined_charge_keeps_both_usable_and_emits_no_status_event(world: World) -> None:
    si_id = world.authorized()
    pi_id = world.pi(si_id, 1051)
    before = len(world.storage.tables.outbox)
    answer = world.services.payment_intents.charge(world.account, pi_id)
    assert (answer.status, answer.message) == ("Declined", "Insufficient funds")
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CREATED
    assert world.services.setup_intents.get(world.account, si_id).status is SI.AUTHORIZED
    assert len(world.storage.tables.outbox) == before


class ExplodingCharger:
    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        raise TimeoutError("acquirer timed out")

    def status(self, request: ChargeRequest) -> ChargeOutcome:
        return ChargeOutcome(ChargeResult.APPROVED, "DEPOSITED", "123456")


def test_unknown_outcome_holds_the_claim_and_recovery_settles_it() -> None:
    world = World(charger=ExplodingCharger())
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    assert world.storage.tables.payment_intents[pi_id].status is PI.CHARGING
    assert world.services.payment_intents.get(world.account, pi_id).public_status is PI.CREATED
    with pytest.raises(ChargeInProgress):
        world.services.payment_intents.charge(world.account, pi_id)
    with pytest.raises(ChargeInProgress):
        world.services.setup_intents.delete(world.account, si_id, include_authorized=True)
    assert world.services.sweeper.run_once().recovered_charges == 1
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CAPTURED
    assert world.services.setup_intents.get(world.account, si_id).status is SI.COMPLETED


def test_lost_answer_in_the_sandbox_is_charged_once(world: World) -> None:
    si_id = world.authorized()
    pi_id = world.pi(si_id, 1099)
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    world.services.sweeper.run_once()
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CAPTURED
    assert world.acquirer.times_sent(key(pi_id)) == 1


def test_concurrent_charges_on_memory_storage_succeed_once(world: World) -> None:
    si_id = world.authorized()
    pis = [world.pi(si_id, 1000 + i) for i in range(5)]
    results: list[str] = []
    lock = threading.Lock()

    def go(pi_id: str) -> None:
        try:
            status = world.services.payment_intents.charge(world.account, pi_id).status
        except (InvalidState, ChargeInProgress, SetupIntentNotUsable) as exc:
            status = type(exc).__name__
        with lock:
            results.append(status)

    threads = [threading.Thread(target=go, args=(p,)) for p in pis * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("Successful") == 1
    assert sum(world.acquirer.times_sent(key(p)) for p in pis) == 1


def test_close_removes_the_card_from_the_vault_in_the_same_transaction(world: World) -> None:
    si_id = world.authorized()
    assert len(world.storage.tables.vault) == 1
    with pytest.raises(InvalidState):
        world.services.setup_intents.delete(world.account, si_id, include_authorized=False)
    assert len(world.storage.tables.vault) == 1
    closed = world.services.setup_intents.delete(world.account, si_id, include_authorized=True)
    assert closed.status is SI.CLOSED
    assert world.storage.tables.vault == {}


def test_a_failed_unit_of_work_leaves_no_change_and_no_event(world: World) -> None:
    si_id = world.authorized()
    before_events = list(world.storage.tables.outbox)
    before_sis = dict(world.storage.tables.setup_intents)
    changes = world.services.setup_intents._changes
    with pytest.raises(RuntimeError), world.storage.transaction(write=True) as uow:
        si = uow.setup_intents.get(world.account.id, si_id)
        assert si is not None
        changes.save(uow, si, sim.transition(si, sim.Event.CLOSE, si.updated_at))
        assert len(uow.outbox._t.outbox) == len(before_events) + 1  # recorded inside…
        raise RuntimeError("boom")  # …and rolled back
    assert world.storage.tables.outbox == before_events
    assert world.storage.tables.setup_intents == before_sis


def test_expiry_is_applied_on_read_and_by_the_sweeper(world: World) -> None:
    sis = world.services.setup_intents
    read_one, _ = sis.create(world.account, NewSetupIntent("a", "t", "NoShow"))
    swept_one, _ = sis.create(world.account, NewSetupIntent("b", "t", "NoShow"))
    world.clock.now_value += timedelta(days=31)
    assert sis.get(world.account, read_one.id).status is SI.EXPIRED
    assert world.storage.tables.setup_intents[swept_one.id].status is SI.CREATED
    report = world.services.sweeper.run_once()
    assert report.setup_intents == 1
    assert world.storage.tables.setup_intents[swept_one.id].status is SI.EXPIRED
    assert events(world).count(("setup_intent.status_updated", "Expired")) == 2


def test_client_session_secret_rules(world: World) -> None:
    sis = world.services.setup_intents
    si, secret = sis.create(world.account, NewSetupIntent("a", "t", "NoShow"))
    assert sis.authenticate_public(si.id, secret, None).id == si.id
    with pytest.raises(ClientSecretInvalid):
        sis.authenticate_public(si.id, secret + "x", None)
    world.clock.now_value += timedelta(minutes=31)
    with pytest.raises(ClientSecretExpired):
        sis.authenticate_public(si.id, secret, None)
    _si2, fresh = sis.refresh_public_secret(si.id, secret)
    assert fresh != secret
    assert sis.authenticate_public(si.id, fresh, None).id == si.id
    with pytest.raises(Unauthorized):
        sis.authenticate_public(si.id, secret, None)
    other, _, _ = world.services.accounts.create("other", Mode.SANDBOX)
    with pytest.raises(NotFound):
        sis.authenticate_public(si.id, "", other)


def test_another_accounts_objects_are_not_found(world: World) -> None:
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    other, _, _ = world.services.accounts.create("other", Mode.SANDBOX)
    with pytest.raises(NotFound):
        world.services.setup_intents.get(other, si_id)
    with pytest.raises(NotFound):
        world.services.payment_intents.charge(other, pi_id)
    with pytest.raises(SetupIntentNotUsable):
        world.services.payment_intents.create(
            other, NewPaymentIntent(Money(5, "GBP"), "x", setup_intent_id=si_id)
        )


def test_an_invalid_request_never_reaches_the_acquirer(world: World) -> None:
    cmd = NewSetupIntent("ref", "terms", "NoShow", expire_at=world.clock.now() - timedelta(1))
    card = CardInput(CardNumber("5200000000001005"), Expiry(12, 2030), Cvv("123", None), None)
    with pytest.raises(ValidationFailed):
        world.intake.create(world.account, cmd, card)
    assert world.acquirer.verifications == 0
    assert world.storage.tables.vault == {}


def test_prod_accounts_are_refused_by_the_sandbox_acquirer(world: World) -> None:
    prod = Account("acc_p", "p", Mode.PROD, world.clock.now())
    with world.storage.transaction(write=True) as uow:
        uow.accounts.add(prod)
        uow.commit()
    cmd = NewSetupIntent("ref", "terms", "NoShow")
    card = CardInput(CardNumber("5200000000001005"), Expiry(12, 2030), Cvv("123", None), None)
    with pytest.raises(Unavailable):
        world.intake.create(prod, cmd, card)
    assert world.storage.tables.vault == {}


def test_a_card_the_loaded_key_cannot_open_fails_the_charge_and_releases_it(world: World) -> None:
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    other_keyring = KeyringSource(Keyring("kek-2", {"kek-2": os.urandom(32)}))
    other_vault = Vault(other_keyring, world.storage)  # its DEK is wrapped under kek-1
    charger = VaultCharger(world.storage, other_vault, world.acquirer)
    api = build_api(
        world.settings,
        storage=world.storage,
        clock=world.clock,
        charger=charger,
        idempotency_secret=world.idempotency_secret,
        webhooks=world.webhook_seams,
    )
    answer = api.services.payment_intents.charge(world.account, pi_id)
    assert answer.status == "Failed"
    assert "cannot be read" in answer.message
    assert world.storage.tables.payment_intents[pi_id].status is PI.CREATED
    assert world.storage.tables.setup_intents[si_id].status is SI.AUTHORIZED
    assert world.acquirer.times_sent(key(pi_id)) == 0


def test_the_sandbox_clock_brings_recovery_forward_but_never_before_the_call_timeout() -> None:
    world = World(recovery_after=30)  # the acquirer call's hard timeout: 10 s
    si_id = world.authorized()
    pi_id = world.pi(si_id, 1099)
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    world.services.accounts.advance_clock(world.account, 86_400)  # the sandbox clock jumps a day
    assert world.services.payment_intents.recover() == 0  # the first call may still be in flight
    world.clock.now_value += timedelta(seconds=11)  # past the timeout, long before 30 s
    assert world.services.payment_intents.recover() == 1
    assert world.storage.tables.payment_intents[pi_id].status is PI.CAPTURED


def test_without_a_clock_move_recovery_waits_the_whole_delay() -> None:
    world = World(recovery_after=30)
    pi_id = world.pi(world.authorized(), 1099)
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    world.clock.now_value += timedelta(seconds=29)
    assert world.services.payment_intents.recover() == 0
    world.clock.now_value += timedelta(seconds=31)  # 60 s of real time
    assert world.services.payment_intents.recover() == 1


def test_accounts_names_listing_and_the_sandbox_clock(world: World) -> None:
    accounts = world.services.accounts
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(ValidationFailed):
            accounts.create(bad, Mode.SANDBOX)
    prod, _, _ = accounts.create("  Platform  ", Mode.PROD)
    assert prod.name == "Platform"
    assert [a.id for a in accounts.list()] == [world.account.id, prod.id]
    now, offset = accounts.clock(world.account)
    assert (now, offset) == (world.clock.now(), 0)
    for bad_seconds in (0, 315_360_001):
        with pytest.raises(ValidationFailed):
            accounts.advance_clock(world.account, bad_seconds)
    moved, offset = accounts.advance_clock(world.account, 3600)
    assert (moved - world.clock.now(), offset) == (timedelta(hours=1), 3600)
    later = accounts.authenticate(world.key)
    assert accounts.clock(later) == (world.clock.now() + timedelta(hours=1), 3600)
    for call in (accounts.clock, lambda a: accounts.advance_clock(a, 1)):
        with pytest.raises(SandboxOnly):
            call(prod)
    ghost = Account("acc_ghost", "ghost", Mode.SANDBOX, world.clock.now())
    with pytest.raises(NotFound):
        accounts.advance_clock(ghost, 1)


def test_the_sweeper_expires_unread_payment_intents_and_reports_counts(world: World) -> None:
    pis = world.services.payment_intents
    unread = [world.pi(None) for _ in range(3)]
    world.advance(days=30)
    report = world.services.sweeper.run_once()
    assert (report.setup_intents, report.payment_intents, report.recovered_charges) == (0, 3, 0)
    assert {world.storage.tables.payment_intents[p].status for p in unread} == {PI.CANCELED}
    assert events(world).count(("payment_intent.status_updated", "Canceled")) == 3
    assert world.services.sweeper.run_once().payment_intents == 0  # nothing is due twice
    with pytest.raises(NotFound):
        pis.get(world.account, "pi_sandbox_unknown")
