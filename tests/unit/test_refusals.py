"""The refusal rules beside the tables, the write gate's edges and the money-movement primitive's
unhappy paths, on the in-memory storage."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.attempts import AttemptType, AuthAttempt
from cardkeep.domain.errors import (
    ChargeInProgress,
    ClientSecretExpired,
    ClientSecretInvalid,
    ClientSecretUsed,
    InvalidState,
    NotFound,
    NotMerchantInitiated,
    SetupIntentNotUsable,
    Unavailable,
    ValidationFailed,
)
from cardkeep.domain.money import Money
from cardkeep.service import money_movement
from cardkeep.service.changes import DueFirst
from cardkeep.service.payment_intents import ChargeStatus, NewPaymentIntent, answer_from
from cardkeep.service.ports import ChargeOutcome, ChargeResult
from cardkeep.service.setup_intents import NewSetupIntent
from tests.factories import CARD, T0, make_pi, make_si
from tests.fakes import ScriptedAcquirer
from tests.world import World

S, PS = sim.Status, pim.Status


# -- the rules beside the tables ------------------------------------------------------------------


@pytest.mark.parametrize("status", list(S))
def test_deletion_of_a_setup_intent_in_every_status(status: sim.Status) -> None:
    si = make_si(status, card=CARD)
    expected: dict[sim.Status, Any] = {
        S.CREATED: sim.Event.CANCEL,
        S.CANCELED: None,
        S.CLOSED: None,
        S.AUTHORIZED: InvalidState,  # without includeAuthorized
        S.CHARGE_HELD: ChargeInProgress,
        S.EXPIRED: InvalidState,
        S.CARD_EXPIRED: InvalidState,
        S.COMPLETED: InvalidState,
    }
    want = expected[status]
    if isinstance(want, type):
        with pytest.raises(want):
            sim.deletion(si, include_authorized=False)
    else:
        assert sim.deletion(si, include_authorized=False) is want
    if status is S.AUTHORIZED:
        assert sim.deletion(si, include_authorized=True) is sim.Event.CLOSE


@pytest.mark.parametrize("status", list(PS))
def test_cancellation_and_charge_claim_of_a_payment_intent_in_every_status(
    status: pim.Status,
) -> None:
    pi = make_pi(status)
    if status is PS.CREATED:
        assert pim.cancellation(pi) is pim.Event.CANCEL
        assert pim.charge_claim(pi) is pim.Event.CLAIM
    elif status is PS.CANCELED:
        assert pim.cancellation(pi) is None
    elif status is PS.CHARGING:
        for rule in (pim.cancellation, pim.charge_claim):
            with pytest.raises(ChargeInProgress):
                rule(pi)
    else:
        for rule in (pim.cancellation, pim.charge_claim):
            with pytest.raises(InvalidState):
                rule(pi)
    with pytest.raises(NotMerchantInitiated):
        pim.charge_claim(replace(pi, setup_intent_id=None))


@pytest.mark.parametrize("status", list(S))
def test_charge_hold_and_secrets_by_status(status: sim.Status) -> None:
    si = make_si(status, card=CARD)
    if status is S.AUTHORIZED:
        assert sim.charge_hold(si) is sim.Event.HOLD_FOR_CHARGE
        with pytest.raises(SetupIntentNotUsable):  # a card that is no longer on file
            sim.charge_hold(replace(si, card=replace(CARD, vault_token=None)))
    elif status is S.CHARGE_HELD:
        with pytest.raises(ChargeInProgress):
            sim.charge_hold(si)
    else:
        with pytest.raises(SetupIntentNotUsable):
            sim.charge_hold(si)
    secret = sim.ClientSecret("h", T0, T0 + timedelta(minutes=30))
    if status is S.CREATED:
        assert sim.with_secret(si, secret, T0).secret == secret
    else:
        with pytest.raises(InvalidState):
            sim.with_secret(si, secret, T0)


def test_money_refuses_a_malformed_currency() -> None:
    for bad in ("GB", "GBPX", "G8P"):
        with pytest.raises(ValueError, match="three-letter"):
            Money(1, bad)


def test_answer_from_a_settled_payment_intent() -> None:
    def attempt(kind: AttemptType, message: str) -> AuthAttempt:
        return AuthAttempt("t", T0, kind, message, None, None)

    assert answer_from(make_pi(PS.CAPTURED)).status is ChargeStatus.SUCCESSFUL
    assert answer_from(make_pi(PS.CAPTURED)).message == "DEPOSITED"
    failed = make_pi(payment_events=(attempt(AttemptType.ERROR, "Acquirer unavailable"),))
    assert (answer_from(failed).status, answer_from(failed).message) == (
        ChargeStatus.FAILED,
        "Acquirer unavailable",
    )
    assert answer_from(make_pi()).status is ChargeStatus.DECLINED


# -- the write gate -------------------------------------------------------------------------------


def test_a_save_that_lost_its_race_changes_nothing_and_says_retry() -> None:
    world = World()
    si, _ = world.services.setup_intents.create(world.account, NewSetupIntent("r", "t", "NoShow"))
    changes = world.services.setup_intents._changes
    stale = replace(si, status=S.AUTHORIZED)  # not what is stored
    with pytest.raises(ChargeInProgress), world.storage.transaction(write=True) as uow:
        changes.save(uow, stale, sim.transition(stale, sim.Event.CLOSE, T0))
    with world.storage.transaction(write=True) as uow:
        assert not changes.apply_due(uow, stale, sim.transition(stale, sim.Event.CLOSE, T0))
    assert world.storage.tables.setup_intents[si.id].status is S.CREATED
    with pytest.raises(TypeError), world.storage.transaction(write=True) as uow:
        changes.save(uow, si, make_pi())


def test_a_decision_that_keeps_finding_due_changes_gives_up_with_503() -> None:
    world = World()
    si, _ = world.services.setup_intents.create(world.account, NewSetupIntent("r", "t", "NoShow"))
    changes = world.services.setup_intents._changes
    rounds = []

    def always_due(uow: Any) -> None:
        rounds.append(1)
        raise DueFirst(si, si)  # a "due change" that never lands

    with pytest.raises(Unavailable):
        changes.decide(always_due)
    assert len(rounds) == 4


# -- payment intents --------------------------------------------------------------------------------


def test_payment_intent_create_refusals() -> None:
    world = World()
    pis = world.services.payment_intents
    si_id = world.authorized()  # intendedAmount in GBP
    for cmd, error in [
        (NewPaymentIntent(Money(5, "USD"), "x"), ValidationFailed),
        (NewPaymentIntent(Money(5, "GBP"), "x", expire_at=T0 - timedelta(1)), ValidationFailed),
        (NewPaymentIntent(Money(5, "EUR"), "x", setup_intent_id=si_id), ValidationFailed),
        (NewPaymentIntent(Money(5, "GBP"), "x", setup_intent_id="si_sandbox_none"), Exception),
    ]:
        with pytest.raises(error):
            pis.create(world.account, cmd)
    assert world.storage.tables.payment_intents == {}


def test_cancel_twice_answers_the_same_and_charging_refuses_it() -> None:
    world = World()
    pis = world.services.payment_intents
    pi_id = world.pi(None)
    first = pis.cancel(world.account, pi_id)
    assert pis.cancel(world.account, pi_id) == first
    assert world.events().count(("payment_intent.status_updated", "Canceled")) == 1
    with pytest.raises(NotFound):
        pis.cancel(world.account, "pi_sandbox_none")


def test_a_charge_whose_setup_intent_or_card_is_gone_is_refused_and_sends_nothing() -> None:
    acquirer = ScriptedAcquirer()
    world = World(acquirer=acquirer)
    pis = world.services.payment_intents
    orphan = make_pi(id_="pi_sandbox_orphan", account_id=world.account.id, setup_intent_id="si_x")
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    token = world.storage.tables.setup_intents[si_id].vault_token
    assert token is not None
    with world.storage.transaction(write=True) as uow:
        uow.payment_intents.add(orphan)
        uow.vault.forget(token)
        uow.commit()
    with pytest.raises(SetupIntentNotUsable, match="No setup intent"):
        pis.charge(world.account, orphan.id)
    with pytest.raises(SetupIntentNotUsable, match="no longer on file"):
        pis.charge(world.account, pi_id)
    assert acquirer.charges == []
    assert world.storage.tables.payment_intents[pi_id].status is PS.CREATED


def _charge_left_unknown() -> tuple[World, str]:
    """A world with one charge claimed whose outcome is unknown."""
    world = World(
        acquirer=ScriptedAcquirer(answers=deque([ChargeOutcome(ChargeResult.UNKNOWN, "?")]))
    )
    pi_id = world.pi(world.authorized())
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    return world, pi_id


def test_an_unknown_outcome_is_never_settled() -> None:
    world, _ = _charge_left_unknown()
    pis = world.services.payment_intents
    claim = next(iter(_claims(world)))
    with (
        pytest.raises(ValueError, match="never settled"),
        world.storage.transaction(write=True) as uow,
    ):
        pis._charge.settle(uow, claim, ChargeOutcome(ChargeResult.UNKNOWN, "?"))


def _claims(world: World) -> list[Any]:
    from cardkeep.service.payment_intents import ChargeClaim

    out = []
    for pi in world.storage.tables.payment_intents.values():
        if pi.status is PS.CHARGING and pi.setup_intent_id is not None:
            si = world.storage.tables.setup_intents[pi.setup_intent_id]
            out.append(
                ChargeClaim(
                    world.account,
                    pi.id,
                    world.services.payment_intents._charge.request(world.account, pi, si),
                )
            )
    return out


class _Flaky:
    """A movement whose re-sends fail, then stay unknown: recovery leaves the claim alone."""

    def __init__(self, inner: Any, answers: list[Any]) -> None:
        self._inner, self._answers = inner, answers

    def resend(self, claim: Any) -> ChargeOutcome:
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_recovery_leaves_a_claim_whose_resend_fails_or_stays_unknown() -> None:
    world, pi_id = _charge_left_unknown()
    pis = world.services.payment_intents
    flaky = _Flaky(pis._charge, [TimeoutError("again"), ChargeOutcome(ChargeResult.UNKNOWN, "?")])
    claims = _claims(world)
    assert money_movement.recover(world.storage, flaky, claims) == 0  # type: ignore[arg-type]
    assert money_movement.recover(world.storage, flaky, claims) == 0  # type: ignore[arg-type]
    assert world.storage.tables.payment_intents[pi_id].status is PS.CHARGING
    assert pis.recover() == 1  # the real re-send settles it


def test_recovery_skips_a_claim_it_cannot_rebuild() -> None:
    world = World()
    claimed = make_pi(
        PS.CHARGING, id_="pi_sandbox_lost", account_id=world.account.id, setup_intent_id="si_none"
    )
    with world.storage.transaction(write=True) as uow:
        uow.payment_intents.add(claimed)
        uow.commit()
    assert world.services.payment_intents.recover() == 0


# -- setup intents and client session secrets -----------------------------------------------------


def test_setup_intent_expiry_bounds_and_repeated_deletes() -> None:
    world = World()
    sis = world.services.setup_intents
    for when in (T0 - timedelta(seconds=1), T0 + timedelta(days=366)):
        with pytest.raises(ValidationFailed):
            sis.create(world.account, NewSetupIntent("r", "t", "NoShow", expire_at=when))
    si, _ = sis.create(world.account, NewSetupIntent("r", "t", "NoShow"))
    canceled = sis.delete(world.account, si.id, include_authorized=False)
    assert sis.delete(world.account, si.id, include_authorized=False) == canceled
    with pytest.raises(InvalidState):
        sis.refresh_secret(world.account, si.id)


def test_client_session_secrets_used_too_old_and_the_owner_key() -> None:
    world = World()
    sis = world.services.setup_intents
    si, secret = sis.create(world.account, NewSetupIntent("r", "t", "NoShow"))
    assert sis.authenticate_public(si.id, "", world.account).id == si.id  # the owner's key
    used = replace(si.secret, used=True)  # type: ignore[type-var]
    world.storage.tables.setup_intents[si.id] = replace(si, secret=used)
    with pytest.raises(ClientSecretUsed):
        sis.authenticate_public(si.id, secret, None)
    world.storage.tables.setup_intents[si.id] = si
    world.advance(hours=25)
    with pytest.raises(ClientSecretExpired, match="too old"):
        sis.refresh_public_secret(si.id, secret)
    with pytest.raises(ClientSecretInvalid):  # an unknown id looks like a wrong secret
        sis.refresh_public_secret("si_sandbox_none", secret)
