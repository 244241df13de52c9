"""Background work in process: heartbeats say when a loop is late, and the sweeper isolates a
failing account from the others."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cardkeep.domain.card import Expiry
from cardkeep.domain.money import Money
from cardkeep.domain.payment_intent import Status as PI
from cardkeep.domain.timefmt import iso, iso_seconds
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.payment_intents import NewPaymentIntent
from tests.world import FixedClock, World


def test_a_loop_is_late_after_three_intervals_without_a_run() -> None:
    clock = FixedClock()
    beats = Heartbeats(clock)
    assert beats.late() == {}
    beats.register("sweeper", 5)
    clock.now_value += timedelta(seconds=15)
    assert beats.late() == {}
    clock.now_value += timedelta(seconds=1)
    started = clock.now_value - timedelta(seconds=16)
    assert beats.late() == {"sweeper": started}
    beats.beat("sweeper")
    assert beats.late() == {}


def test_health_reports_a_late_loop_as_degraded() -> None:
    world = World()
    api, _ = world.clients()
    assert api.get("/health").json() == {"status": "ok"}
    world.services.heartbeats.register("sweeper", 1)
    world.advance(seconds=4)
    r = api.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "degraded",
        "loops": {"sweeper": {"lastRunAt": iso(world.clock.now() - timedelta(seconds=4))}},
    }


def test_an_account_whose_sweep_fails_does_not_stop_the_others() -> None:
    world = World()
    victim, _, _ = world.services.accounts.create("victim", world.account.mode)
    # A clock so far ahead that reading it overflows (no request can set it any more).
    broken = replace(world.account, clock_offset_us=8_000 * 365 * 86_400 * 1_000_000)
    world.storage.tables.accounts[broken.id] = broken
    pi = world.services.payment_intents.create(victim, NewPaymentIntent(Money(5, "GBP"), "r"))
    world.advance(days=31)
    report = world.services.sweeper.run_once()
    assert report.failed_accounts == (broken.id,)
    assert report.payment_intents == 1
    assert world.storage.tables.payment_intents[pi.id].status is PI.CANCELED


def test_timestamps_always_have_four_year_digits() -> None:
    early = datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert iso(early) == "0999-01-02T03:04:05.000006Z"
    assert iso_seconds(early) == "0999-01-02T03:04:05Z"


@pytest.mark.parametrize("text", ["12/1999", "01/2100", "12/9999"])
def test_a_four_digit_expiry_year_outside_this_century_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="2000 to 2099"):
        Expiry.parse(text)
