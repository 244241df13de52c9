"""The charge as a money movement: per-attempt acquirer keys, the network transaction id of the
setup verification on every charge, re-sends with the same key, and cards leaving the vault."""

from __future__ import annotations

from collections import deque

import pytest

from cardkeep.cde.acquirers.base import MitCharge
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import Unavailable
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.service.payment_intents import ChargeClaim
from cardkeep.service.ports import ChargeOutcome, ChargeRequest, ChargeResult
from tests.fakes import ScriptedAcquirer
from tests.world import World

DECLINED = ChargeOutcome(ChargeResult.DECLINED, "Do not honour")
UNKNOWN = ChargeOutcome(ChargeResult.UNKNOWN, "timed out")


def test_a_retry_after_a_decline_is_a_new_attempt_with_a_new_key() -> None:
    acquirer = ScriptedAcquirer(answers=deque([DECLINED]))
    world = World(acquirer=acquirer)
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    pis = world.services.payment_intents
    assert pis.charge(world.account, pi_id).status == "Declined"
    assert pis.charge(world.account, pi_id).status == "Successful"
    assert acquirer.keys() == [f"charge:{pi_id}:1", f"charge:{pi_id}:2"]
    assert pis.get(world.account, pi_id).status is PI.CAPTURED
    assert [e.event_type for e in pis.get(world.account, pi_id).payment_events] == [
        "Declined",
        "Captured",
    ]


def test_the_network_transaction_id_of_the_verification_reaches_every_charge() -> None:
    acquirer = ScriptedAcquirer(answers=deque([DECLINED]), network_transaction_id="nt_abc123")
    world = World(acquirer=acquirer)
    si_id = world.authorized()
    si = world.services.setup_intents.get(world.account, si_id)
    assert si.card is not None
    assert si.card.network_transaction_id == "nt_abc123"
    pi_id = world.pi(si_id)
    world.services.payment_intents.charge(world.account, pi_id)
    world.services.payment_intents.charge(world.account, pi_id)
    assert [c.network_transaction_id for c in acquirer.charges] == ["nt_abc123", "nt_abc123"]
    assert all(c.pan.masked == "520000******1005" for c in acquirer.charges)


def test_recovery_resends_the_same_attempt_with_the_same_key_once() -> None:
    acquirer = ScriptedAcquirer(answers=deque([UNKNOWN]))
    world = World(acquirer=acquirer)
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    unknown = world.services.payment_intents.get(world.account, pi_id)
    assert [e.event_type for e in unknown.public_events] == ["Unknown"]
    assert unknown.payment_events == ()  # nothing settled yet
    assert world.services.payment_intents.recover() == 1
    settled = world.services.payment_intents.get(world.account, pi_id)
    assert [e.event_type for e in settled.public_events] == ["Captured"]
    assert settled.payment_events[0].transaction_id == unknown.public_events[0].transaction_id
    assert [c.idempotency_key for c in acquirer.resends] == [f"charge:{pi_id}:1"]
    assert acquirer.keys() == [f"charge:{pi_id}:1"]
    assert world.services.payment_intents.recover() == 0  # settled: nothing left to ask
    assert world.services.payment_intents.get(world.account, pi_id).status is PI.CAPTURED


def test_a_late_settlement_of_a_settled_attempt_changes_nothing() -> None:
    """A second answer for an attempt already settled (recovery won) is answered from storage."""
    acquirer = ScriptedAcquirer(answers=deque([UNKNOWN]))
    world = World(acquirer=acquirer)
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    pis = world.services.payment_intents
    with pytest.raises(Unavailable):
        pis.charge(world.account, pi_id)
    assert pis.recover() == 1
    before = world.events()
    request = ChargeRequest(
        Mode.SANDBOX,
        world.account.id,
        "vt_x",
        Expiry(12, 2030),
        Money(1000, "GBP"),
        f"charge:{pi_id}:1",
        None,
    )
    with world.storage.transaction(write=True) as uow:
        answer = pis._charge.settle(uow, ChargeClaim(world.account, pi_id, request), DECLINED)
        uow.commit()
    assert answer.status == "Successful"
    assert world.events() == before
    assert pis.get(world.account, pi_id).status is PI.CAPTURED


@pytest.mark.parametrize(
    ("answer", "si_status"),
    [
        (ChargeOutcome(ChargeResult.APPROVED, "DEPOSITED"), SI.COMPLETED),
        (ChargeOutcome(ChargeResult.CARD_EXPIRED, "Card expired"), SI.CARD_EXPIRED),
    ],
)
def test_a_used_or_expired_card_leaves_the_vault_with_the_change(
    answer: ChargeOutcome, si_status: SI
) -> None:
    world = World(acquirer=ScriptedAcquirer(answers=deque([answer])))
    si_id = world.authorized()
    assert len(world.storage.tables.vault) == 1
    world.services.payment_intents.charge(world.account, world.pi(si_id))
    si = world.services.setup_intents.get(world.account, si_id)
    assert si.status is si_status
    assert si.card is not None
    assert si.card.vault_token is None
    assert si.card.masked_number == "520000******1005"
    assert world.storage.tables.vault == {}


def test_a_declined_or_failed_charge_keeps_the_card() -> None:
    failed = ChargeOutcome(ChargeResult.FAILED, "Acquirer unavailable")
    world = World(acquirer=ScriptedAcquirer(answers=deque([DECLINED, failed])))
    si_id = world.authorized()
    pi_id = world.pi(si_id)
    assert world.services.payment_intents.charge(world.account, pi_id).status == "Declined"
    assert world.services.payment_intents.charge(world.account, pi_id).status == "Failed"
    assert len(world.storage.tables.vault) == 1


def test_card_expiry_by_the_clock_forgets_the_card_and_is_committed_before_the_refusal() -> None:
    world = World()  # the clock says 2026-11-24
    si_id = world.authorized(expiry=Expiry(11, 2026))
    pi_id = world.pi(si_id)
    world.advance(days=8)  # the card's month has ended; the payment intent has not expired
    answer = world.services.payment_intents.charge(world.account, pi_id)
    assert (answer.status, answer.message) == ("Declined", "Card expired")
    assert world.storage.tables.setup_intents[si_id].status is SI.CARD_EXPIRED
    assert world.storage.tables.vault == {}
    assert ("setup_intent.status_updated", "CardExpired") in world.events()
    assert world.acquirer.times_sent(f"charge:{pi_id}:1") == 0  # type: ignore[attr-defined]


def test_a_refusal_keeps_the_expiry_it_found_due() -> None:
    """The expiry is committed in its own transaction; the refusal rolls back only itself."""
    from cardkeep.domain.errors import SetupIntentNotUsable
    from cardkeep.domain.money import Money
    from cardkeep.service.payment_intents import NewPaymentIntent
    from cardkeep.service.setup_intents import NewSetupIntent

    world = World()
    si, _ = world.services.setup_intents.create(world.account, NewSetupIntent("r", "t", "NoShow"))
    world.advance(days=31)
    with pytest.raises(SetupIntentNotUsable, match="Expired"):
        world.services.payment_intents.create(
            world.account, NewPaymentIntent(Money(1000, "GBP"), "fee", setup_intent_id=si.id)
        )
    assert world.storage.tables.setup_intents[si.id].status is SI.EXPIRED
    assert world.events()[-1] == ("setup_intent.status_updated", "Expired")
    assert world.storage.tables.payment_intents == {}


def test_an_answer_after_the_call_timeout_is_not_settled_from() -> None:
    """The acquirer answers after the hard timeout: the answer is set aside, the charge is left to
    recovery, which asks again only after the recovery delay and gets the same answer."""

    class Slow(ScriptedAcquirer):
        def charge(self, charge: MitCharge) -> ChargeOutcome:
            world.advance(seconds=11)
            return super().charge(charge)

    world = World(recovery_after=30, acquirer=Slow())  # acquirer timeout: 10 s
    acquirer = world.acquirer
    assert isinstance(acquirer, Slow)
    pi_id = world.pi(world.authorized())
    with pytest.raises(Unavailable):
        world.services.payment_intents.charge(world.account, pi_id)
    assert world.storage.tables.payment_intents[pi_id].status is PI.CHARGING
    assert world.services.payment_intents.recover() == 0  # 11 s after the claim: too early
    world.advance(seconds=20)
    assert world.services.payment_intents.recover() == 1
    assert [c.idempotency_key for c in acquirer.resends] == [f"charge:{pi_id}:1"]
    assert world.storage.tables.payment_intents[pi_id].status is PI.CAPTURED
