"""Card-testing defence, in process: failed card attempts per account and per setup intent paid
through a client session secret, distinct cards per such setup intent, and (when configured)
approved entries per account, counted before the acquirer is asked and answered 429
``rate_limited`` with Retry-After; the window slides; a 429 is never kept under an
Idempotency-Key; an attempt the acquirer could not answer is not counted."""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cardkeep.bootstrap import fingerprints
from cardkeep.cde.acquirers.sandbox import SandboxAcquirer
from cardkeep.cde.fingerprint import CardFingerprints
from cardkeep.cde.intake import CardInput
from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.config import Settings
from cardkeep.domain.account import Mode
from cardkeep.domain.card import Expiry
from cardkeep.domain.errors import ClientSecretInvalid, RateLimited, Unavailable
from cardkeep.domain.setup_intent import Status as SI
from cardkeep.keyfiles import KeyFileError
from cardkeep.service.ports import CardResult
from cardkeep.service.setup_intents import NewSetupIntent
from cardkeep.service.sweeper import PRUNE_EVERY
from tests.merchant import APPROVED_CARD, SI_FIELDS, card
from tests.world import World

DECLINED = ("4000000000000002", "4000000000009995", "4456530000001013")
WINDOW = 600


def world_with(**limits: Any) -> World:
    settings = Settings(
        data_dir=Path("/nonexistent"), card_schemes=("VISA", "MASTERCARD"), **limits
    )
    return World(settings=settings)


def verifications(world: World) -> int:
    assert isinstance(world.acquirer, SandboxAcquirer)
    return world.acquirer.verifications


def pci_create(world: World, pan: str, headers: dict[str, str] | None = None) -> httpx.Response:
    _, pci = world.clients()
    body = {**SI_FIELDS, "cardDetails": card(pan)}
    return pci.post("/setup-intents", json=body, headers=headers or {})


def created(world: World) -> tuple[str, str]:
    api, _ = world.clients()
    r = api.post("/setup-intents", json=SI_FIELDS)
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["clientSessionSecret"]


def refreshed(world: World, si_id: str) -> str:
    api, _ = world.clients()
    r = api.post(f"/setup-intents/{si_id}/refresh-client-session-secret")
    assert r.status_code == 200, r.text
    return str(r.json()["clientSessionSecret"])


def submit(world: World, si_id: str, secret: str, pan: str) -> httpx.Response:
    _, pci = world.bare_clients()
    payload = {"cardDetails": card(pan), "mitConsentGiven": True}
    headers = {"Authorization": f"Basic {secret}", "version": "2025-09-10"}
    return pci.post(f"/setup-intents/public/{si_id}/card", json=payload, headers=headers)


def declined(r: httpx.Response) -> bool:
    """A PCI create whose card the acquirer declined (the intent stays Created)."""
    assert r.status_code == 200, r.text
    return r.json()["setupEvents"][-1]["eventType"] == "Declined"  # type: ignore[no-any-return]


def assert_limited(r: httpx.Response, retry_after: int) -> None:
    assert (r.status_code, r.json()["code"]) == (429, "rate_limited"), r.text
    assert r.headers["Retry-After"] == str(retry_after)


def results(world: World) -> list[CardResult]:
    attempts = sorted(world.storage.tables.card_attempts.values(), key=lambda a: a.at)
    return [a.outcome for a in attempts]


def test_failed_attempts_per_account_then_429_before_the_acquirer() -> None:
    world = world_with(limit_failed_per_account=3)
    for minute, pan in enumerate(DECLINED):
        assert declined(pci_create(world, pan))
        world.advance(minutes=1)
    sent = verifications(world)
    assert_limited(pci_create(world, APPROVED_CARD), WINDOW - 3 * 60)  # the first leaves at 10 min
    assert_limited(pci_create(world, DECLINED[0]), WINDOW - 3 * 60)
    assert verifications(world) == sent  # never reached the acquirer
    assert results(world) == [CardResult.DECLINED] * 3  # a refusal is not an attempt
    refusals = [e for e in world.storage.tables.audit if e.action == "card.rate_limited"]
    assert [(e.outcome, e.account_id, e.actor) for e in refusals] == [
        ("denied", world.account.id, f"account:{world.account.id}")
    ] * 2  # each refusal audited, with the limit it hit
    assert "failed" in refusals[0].detail["reason"]
    world.advance(minutes=7)  # the first failure has left the window
    assert declined(pci_create(world, DECLINED[0]))
    assert_limited(pci_create(world, APPROVED_CARD), 60)  # the second leaves a minute later
    world.advance(minutes=1)
    assert pci_create(world, APPROVED_CARD).json()["status"] == "Authorized"
    assert verifications(world) == sent + 2


def test_expired_cards_and_both_ways_in_count_for_the_account_but_bad_requests_do_not() -> None:
    world = world_with(limit_failed_per_account=3)
    _, pci = world.clients()
    bad = pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card("4111")})
    assert bad.status_code == 400  # a malformed field is not an attempt
    expired = pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card(expiry="01/20")})
    assert expired.json()["status"] == "CardExpired"
    si_id, secret = created(world)
    assert submit(world, si_id, secret, DECLINED[0]).json()["status"] == "Created"
    assert declined(pci_create(world, DECLINED[1]))
    assert results(world) == [CardResult.EXPIRED, CardResult.DECLINED, CardResult.DECLINED]
    assert_limited(submit(world, si_id, secret, APPROVED_CARD), WINDOW)
    assert_limited(pci_create(world, APPROVED_CARD), WINDOW)
    assert verifications(world) == 2


def test_failed_attempts_per_setup_intent_hold_across_refreshed_secrets() -> None:
    """The fifth failure uses the secret up; a refreshed secret gets a 429, not a sixth try, until
    the first failure leaves the window."""
    world = World()
    si_id, secret = created(world)
    for i in range(5):
        r = submit(world, si_id, secret, DECLINED[i % 2])
        assert (r.status_code, r.json()["status"]) == (200, "Created"), r.text
    assert submit(world, si_id, secret, APPROVED_CARD).json()["code"] == (
        "client_session_secret_used"
    )
    sent = verifications(world)
    secret = refreshed(world, si_id)
    assert_limited(submit(world, si_id, secret, APPROVED_CARD), WINDOW)
    assert verifications(world) == sent
    other_id, other_secret = created(world)  # another setup intent of the account is not limited
    assert submit(world, other_id, other_secret, APPROVED_CARD).json()["status"] == "Authorized"
    world.advance(seconds=WINDOW)
    secret = refreshed(world, si_id)
    assert submit(world, si_id, secret, APPROVED_CARD).json()["status"] == "Authorized"


def test_distinct_cards_per_setup_intent() -> None:
    world = World()
    si_id, secret = created(world)
    for pan in DECLINED:
        assert submit(world, si_id, secret, pan).json()["status"] == "Created"
        world.advance(seconds=10)
    sent = verifications(world)
    assert_limited(submit(world, si_id, secret, APPROVED_CARD), WINDOW - 30)  # a fourth card
    assert verifications(world) == sent
    again = submit(world, si_id, secret, DECLINED[1])  # a card tried already is not a new one
    assert (again.status_code, again.json()["status"]) == (200, "Created")
    # the first card's newest try leaves first: then a fourth card may be tried
    world.advance(seconds=WINDOW - 30)
    assert submit(world, si_id, secret, APPROVED_CARD).json()["status"] == "Authorized"


def test_approved_entries_are_not_limited_by_default() -> None:
    world = World()
    for _ in range(30):
        assert pci_create(world, APPROVED_CARD).json()["status"] == "Authorized"
    assert verifications(world) == 30


def test_approved_entries_are_limited_when_configured() -> None:
    world = world_with(limit_approved_per_account=2)
    assert pci_create(world, APPROVED_CARD).json()["status"] == "Authorized"
    assert declined(pci_create(world, DECLINED[0]))  # not an approval
    assert pci_create(world, APPROVED_CARD).json()["status"] == "Authorized"
    assert_limited(pci_create(world, APPROVED_CARD), WINDOW)
    assert verifications(world) == 3
    world.advance(seconds=WINDOW)
    assert pci_create(world, APPROVED_CARD).json()["status"] == "Authorized"


def test_a_limit_of_zero_is_no_limit() -> None:
    world = world_with(limit_failed_per_account=0, limit_failed_per_secret=0)
    for _ in range(8):
        assert declined(pci_create(world, DECLINED[0]))
    world2 = world_with(limit_cards_per_secret=0)
    si_id, secret = created(world2)
    for pan in (*DECLINED, APPROVED_CARD):
        assert submit(world2, si_id, secret, pan).status_code == 200


def test_a_429_is_not_kept_under_its_idempotency_key() -> None:
    world = world_with(limit_failed_per_account=1)
    assert declined(pci_create(world, DECLINED[0]))
    key = {"Idempotency-Key": "card-1"}
    assert_limited(pci_create(world, APPROVED_CARD, key), WINDOW)
    assert_limited(pci_create(world, APPROVED_CARD, key), WINDOW)  # run again, not replayed
    world.advance(seconds=WINDOW)
    first = pci_create(world, APPROVED_CARD, key)
    assert first.json()["status"] == "Authorized"
    assert "Idempotent-Replayed" not in first.headers
    replay = pci_create(world, APPROVED_CARD, key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == first.json()["id"]


def test_an_attempt_the_acquirer_cannot_answer_is_not_counted() -> None:
    world = world_with(limit_failed_per_account=1)
    prod, _, _ = world.services.accounts.create("live", Mode.PROD)  # no acquirer serves prod
    cmd = NewSetupIntent("ref", "terms", "NoShow")
    pan = CardInput(CardNumber(APPROVED_CARD), Expiry(12, 2039), Cvv("123", None), None)
    for _ in range(2):
        with pytest.raises(Unavailable):
            world.intake.create(prod, cmd, pan)
    assert results(world) == []


def test_an_outcome_the_setup_intent_could_not_keep_is_counted_all_the_same() -> None:
    """The intent is canceled while the acquirer answers: the card's outcome is recorded on its
    own, not left pending."""
    world = World()
    si_id, secret = created(world)
    acquirer = world.acquirer
    assert isinstance(acquirer, SandboxAcquirer)
    verify = acquirer.verify

    def verify_then_cancel(*args: Any) -> Any:
        found = verify(*args)
        world.services.setup_intents.delete(world.account, si_id, include_authorized=False)
        return found

    acquirer.verify = verify_then_cancel  # type: ignore[method-assign]
    pan = CardInput(CardNumber(DECLINED[0]), Expiry(12, 2039), Cvv("123", None), None)
    with pytest.raises(ClientSecretInvalid):  # the cancel dropped the secret
        world.intake.add_card(si_id, secret, pan)
    assert results(world) == [CardResult.DECLINED]
    assert world.storage.tables.setup_intents[si_id].status is SI.CANCELED


def test_a_refused_attempt_raises_rate_limited_with_the_seconds_to_wait() -> None:
    world = world_with(limit_failed_per_account=1)
    world.authorized(DECLINED[0])
    world.advance(seconds=599.2)
    with pytest.raises(RateLimited) as refused:
        world.authorized(APPROVED_CARD)
    assert refused.value.retry_after == 1  # 0.8 s, rounded up


def test_the_sweeper_prunes_attempts_that_left_the_window() -> None:
    world = World()
    world.authorized(DECLINED[0])
    world.advance(seconds=WINDOW - 1)
    world.authorized(APPROVED_CARD)
    world.advance(seconds=2)
    world.services.sweeper.run_once()
    assert results(world) == [CardResult.APPROVED]


def test_the_fingerprint_is_keyed_and_appears_in_no_answer() -> None:
    world = World()
    other = World()
    si_id, secret = created(world)
    answers = [
        submit(world, si_id, secret, DECLINED[0]).text,
        pci_create(world, DECLINED[0]).text,
        pci_create(world, APPROVED_CARD).text,
    ]
    other.authorized(DECLINED[0])
    mine = {a.fingerprint for a in world.storage.tables.card_attempts.values()}
    theirs = {a.fingerprint for a in other.storage.tables.card_attempts.values()}
    assert len(mine) == 2
    assert mine.isdisjoint(theirs)  # another key, another fingerprint of the same card
    for attempt in world.storage.tables.card_attempts.values():
        assert not any(
            pan in str(dataclasses.astuple(attempt)) for pan in (*DECLINED, APPROVED_CARD)
        )
    for fingerprint in mine:
        assert not any(fingerprint in text for text in answers)


def test_the_fingerprint_key_is_kept_outside_the_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = fingerprints(settings)
    assert (tmp_path / "fingerprint.key").stat().st_mode & 0o777 == 0o600
    pan = CardNumber(APPROVED_CARD)
    assert fingerprints(settings).of(pan) == first.of(pan)  # the same key on the next start
    assert first.of(pan) != first.of(CardNumber(DECLINED[0]))
    key = base64.b64encode(os.urandom(32)).decode("ascii")
    with pytest.raises(KeyFileError, match="CARDKEEP_FINGERPRINT_KEY differs"):
        fingerprints(dataclasses.replace(settings, fingerprint_key=key))
    other = fingerprints(Settings(data_dir=tmp_path / "other", fingerprint_key=key))
    assert other.of(pan) != first.of(pan)
    assert repr(first) == "CardFingerprints(***)"
    with pytest.raises(ValueError, match="32 bytes"):
        CardFingerprints(b"short")


def test_concurrent_attempts_never_pass_a_limit_between_them() -> None:
    """While the acquirer is slow, attempts pile up between one's check and its outcome: the
    pending ones count, so no more than the limit reach the acquirer."""
    world = world_with(limit_failed_per_account=3)
    acquirer = world.acquirer
    assert isinstance(acquirer, SandboxAcquirer)
    verify = acquirer.verify

    def slow_verify(*args: Any) -> Any:
        time.sleep(0.05)
        return verify(*args)

    acquirer.verify = slow_verify  # type: ignore[method-assign]
    cmd = NewSetupIntent("ref", "terms", "NoShow")
    pan = CardInput(CardNumber(DECLINED[0]), Expiry(12, 2039), Cvv("123", None), None)

    def attempt(_: int) -> str:
        try:
            return world.intake.create(world.account, cmd, pan).status.value
        except RateLimited:
            return "429"

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = sorted(pool.map(attempt, range(12)))
    assert answers == ["429"] * 9 + ["Created"] * 3
    assert acquirer.verifications == 3
    assert results(world) == [CardResult.DECLINED] * 3


def test_the_sweeper_prunes_at_most_once_a_minute() -> None:
    """Each prune is a write transaction: the sweep, which runs every few seconds in every
    process, prunes on its first run and then once per PRUNE_EVERY."""
    world = World()
    writes = 0
    opened = world.storage.transaction

    def counting(*, write: bool) -> Any:
        nonlocal writes
        writes += write
        return opened(write=write)

    world.storage.transaction = counting  # type: ignore[method-assign]
    world.services.sweeper.run_once()
    first, writes = writes, 0
    world.advance(seconds=PRUNE_EVERY.total_seconds() - 1)
    world.services.sweeper.run_once()
    assert writes == first - 2  # no prune of Idempotency-Key records or card attempts
    writes = 0
    world.advance(seconds=1)
    world.services.sweeper.run_once()
    assert writes == first
