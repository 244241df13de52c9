"""The transition tables: every status reachable, illegal transitions raise and change nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardkeep.domain import payment_intent as pim
from cardkeep.domain import setup_intent as sim
from cardkeep.domain.errors import IllegalTransition, InvalidState
from cardkeep.domain.money import Money
from tests import factories
from tests.factories import CARD, T0, make_pi


def make_si(status: sim.Status = sim.Status.CREATED) -> sim.SetupIntent:
    return factories.make_si(status, card=CARD)


def test_every_setup_intent_status_is_reachable_from_the_start() -> None:
    reached = {
        sim.Status.CREATED,
        sim.Status.AUTHORIZED,
        sim.Status.CARD_EXPIRED,
    }  # create outcomes
    frontier = list(reached)
    while frontier:
        status = frontier.pop()
        for (src, _), dst in sim.TRANSITIONS.items():
            if src is status and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(sim.Status)


def test_final_setup_intent_statuses_have_no_way_out() -> None:
    assert not [k for k in sim.TRANSITIONS if k[0] in sim.FINAL]


@given(st.sampled_from(list(sim.Status)), st.sampled_from(list(sim.Event)))
def test_setup_intent_transition_follows_the_table_or_changes_nothing(
    status: sim.Status, event: sim.Event
) -> None:
    si = make_si(status)
    later = T0 + timedelta(seconds=5)
    target = sim.TRANSITIONS.get((status, event))
    if target is None:
        with pytest.raises(IllegalTransition):
            sim.transition(si, event, later)
        assert si.status is status
        assert si.updated_at == T0
    else:
        moved = sim.transition(si, event, later)
        assert moved.status is target
        assert moved.updated_at == later
        assert si.status is status  # the original is untouched (frozen)


@given(st.sampled_from(list(pim.Status)), st.sampled_from(list(pim.Event)))
def test_payment_intent_transition_follows_the_table_or_changes_nothing(
    status: pim.Status, event: pim.Event
) -> None:
    pi = make_pi(status)
    target = pim.TRANSITIONS.get((status, event))
    if target is None:
        with pytest.raises(InvalidState):
            pim.transition(pi, event, T0)
    else:
        assert pim.transition(pi, event, T0).status is target


def test_captured_only_through_a_claim_and_never_twice() -> None:
    into_captured = [
        k
        for k, v in pim.TRANSITIONS.items()
        if v is pim.Status.CAPTURED and k[0] is not pim.Status.CAPTURED  # a partial refund stays
    ]
    assert into_captured == [(pim.Status.CHARGING, pim.Event.CAPTURE)]
    into_charging = [k for k, v in pim.TRANSITIONS.items() if v is pim.Status.CHARGING]
    assert into_charging == [(pim.Status.CREATED, pim.Event.CLAIM)]
    captured = pim.transition(pim.transition(make_pi(), pim.Event.CLAIM, T0), pim.Event.CAPTURE, T0)
    assert captured.captured_amount == 1000
    with pytest.raises(IllegalTransition):
        pim.transition(captured, pim.Event.CLAIM, T0)


def test_internal_statuses_read_as_public_ones() -> None:
    assert make_si(sim.Status.CHARGE_HELD).public_status is sim.Status.AUTHORIZED
    assert make_pi(pim.Status.CHARGING).public_status is pim.Status.CREATED


def test_due_events_follow_the_clock() -> None:
    si = make_si()
    assert sim.due_event(si, si.expire_at - timedelta(microseconds=1)) is None
    assert sim.due_event(si, si.expire_at) is sim.Event.EXPIRE
    auth = make_si(sim.Status.AUTHORIZED)
    assert sim.due_event(auth, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert sim.due_event(auth, datetime(2027, 1, 1, tzinfo=UTC)) is sim.Event.CARD_EXPIRY
    held = replace(auth, status=sim.Status.CHARGE_HELD)
    assert sim.due_event(held, datetime(2030, 1, 1, tzinfo=UTC)) is None
    assert pim.due_event(make_pi(), T0 + timedelta(days=30)) is pim.Event.EXPIRE


def test_money_refuses_floats_and_out_of_range() -> None:
    with pytest.raises(TypeError):
        Money(10.5, "GBP")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "GBP")
    for bad in (0, 100_000_000_000):
        with pytest.raises(ValueError):
            Money(bad, "GBP")
