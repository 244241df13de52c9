"""The transition tables are the code: every use case is driven over the in-memory storage with a
recording hook on ``transition()``, and the set of (status, event) pairs fired equals each table.

A row no use case fires, or a status change that bypasses ``transition()``, fails here; so do
``docs/states.md`` (generated from the tables) and the code drifting apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from cardkeep.cde.intake import CardInput
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import Unavailable
from cardkeep.domain.money import Money
from cardkeep.service.ports import ChargeOutcome, ChargeResult
from cardkeep.service.refunds import NewRefund
from cardkeep.service.setup_intents import NewSetupIntent
from tests.fakes import ScriptedAcquirer
from tests.world import World

Fired = set[tuple[Any, Any]]


@pytest.fixture
def fired(monkeypatch: pytest.MonkeyPatch) -> tuple[Fired, Fired]:
    si_fired: Fired = set()
    pi_fired: Fired = set()

    def recording(module: Any, into: Fired) -> Callable[..., Any]:
        original = module.transition

        def transition(intent: Any, event: Any, now: Any, **changes: Any) -> Any:
            moved = original(intent, event, now, **changes)
            into.add((intent.status, event))
            return moved

        return transition

    monkeypatch.setattr(sim, "transition", recording(sim, si_fired))
    monkeypatch.setattr(pim, "transition", recording(pim, pi_fired))
    return si_fired, pi_fired


def _card(pan: str, expiry: Expiry) -> CardInput:
    return CardInput(CardNumber(pan), expiry, Cvv("123", None), None)


def _drive_every_use_case() -> None:
    declined = ChargeOutcome(ChargeResult.DECLINED, "Do not honour")
    expired = ChargeOutcome(ChargeResult.CARD_EXPIRED, "Card expired")
    world = World(acquirer=ScriptedAcquirer(answers=deque([declined, expired])))
    sandbox = World()  # the sandbox acquirer: declining test cards, unknown outcomes
    sis, pis = world.services.setup_intents, world.services.payment_intents
    account = world.account
    cmd = NewSetupIntent("r", "t", "NoShow", intended_amount=Money(1000, "GBP"))

    # PCI create: approved, declined, card past its expiry month.
    sandbox.intake.create(sandbox.account, cmd, _card("4000000000000002", Expiry(12, 2030)))
    world.intake.create(account, cmd, _card("5200000000001005", Expiry(1, 2020)))
    # API create, then cancel; API create, then expiry on read.
    created, _ = sis.create(account, cmd)
    sis.delete(account, created.id, include_authorized=False)
    expiring, _ = sis.create(account, cmd)
    # Close an authorized one.
    sis.delete(account, world.authorized(), include_authorized=True)
    # Charges: declined then card expired at the acquirer; then approved.
    si_a = world.authorized()
    pi_a = world.pi(si_a)
    pis.charge(account, pi_a)  # declined: released
    pis.charge(account, pi_a)  # the acquirer says the card expired
    captured = world.pi(world.authorized())
    pis.charge(account, captured)  # approved
    # Refunds of it, in part then the rest; another capture reversed.
    refunds = world.services.refunds
    refunds.refund(account, captured, NewRefund(400))
    refunds.refund(account, captured, NewRefund(600))
    reversed_pi = world.pi(world.authorized())
    pis.charge(account, reversed_pi)
    refunds.reverse(account, reversed_pi)
    # A payment intent canceled, another one expired; a card expiring while Authorized.
    pis.cancel(account, world.pi(None))
    stale_pi = world.pi(None)
    card_ends = world.authorized(expiry=Expiry(11, 2026))
    world.advance(days=31)
    pis.get(account, stale_pi)
    sis.get(account, expiring.id)
    sis.get(account, card_ends)
    # An unknown outcome settled by recovery (the sandbox's lost answer).
    with pytest.raises(Unavailable):
        sandbox.services.payment_intents.charge(
            sandbox.account, sandbox.pi(sandbox.authorized(), 1099)
        )
    sandbox.advance(seconds=1)
    assert sandbox.services.sweeper.run_once().recovered_charges == 1


def test_the_events_fired_by_the_use_cases_are_exactly_the_tables(
    fired: tuple[Fired, Fired],
) -> None:
    si_fired, pi_fired = fired
    _drive_every_use_case()
    assert si_fired == set(sim.TRANSITIONS)
    assert pi_fired == set(pim.TRANSITIONS)
