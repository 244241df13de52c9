"""Refunds and reversal (CONTRACT §5.5-5.7, §6), in process over the in-memory storage and the
sandbox acquirer: partial and full refunds, the amount rules, declined, failed and unknown
outcomes and their recovery, the refund idempotency key (Dojo's ``idempotencyKey``, scoped to
the payment intent), reversal, reads, accounts apart, webhooks, and Dojo's shapes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract.schemas import errors_of
from tests.world import SyncClient, World


@pytest.fixture
def world() -> World:
    return World()


def _captured(world: World, value: int = 1000) -> str:
    pi = world.pi(world.authorized(), value)
    api, _ = world.clients()
    assert api.post(f"/payment-intents/{pi}/charge").json()["status"] == "Successful"
    return pi


def _refund(
    api: SyncClient, pi: str, amount: int, key: str | None = "k", **body: Any
) -> httpx.Response:
    headers = {} if key is None else {"idempotencyKey": key}
    return api.post(
        f"/payment-intents/{pi}/refunds", json={"amount": amount, **body}, headers=headers
    )


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


def _pi(api: SyncClient, pi: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/payment-intents/{pi}").json()
    assert not errors_of("PaymentIntent", body), errors_of("PaymentIntent", body)
    return body


def test_partial_refunds_accumulate_and_the_last_one_makes_it_refunded(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    first = _refund(api, pi, 300, "a", refundReason="Charged by mistake", notes="table 4")
    assert first.status_code == 200, first.text
    body = first.json()
    assert not errors_of("Refund", body), errors_of("Refund", body)
    assert body["refundId"].startswith("rfnd_")
    assert (body["paymentIntentId"], body["refundReason"], body["notes"]) == (
        pi,
        "Charged by mistake",
        "table 4",
    )
    after = _pi(api, pi)
    assert (after["status"], after["refundedAmount"]) == ("Captured", 300)
    assert after["paymentEvents"][-1]["eventType"] == "Refunded"
    assert _refund(api, pi, 700, "b").status_code == 200
    done = _pi(api, pi)
    assert (done["status"], done["refundedAmount"]) == ("Refunded", 1000)
    assert [e["eventType"] for e in done["paymentEvents"]][-2:] == ["Refunded", "Refunded"]
    assert ("payment_intent.status_updated", "Refunded") in world.events()
    read = api.get(f"/payment-intents/refunds/{body['refundId']}")
    assert read.json() == body
    _problem(_refund(api, pi, 1, "c"), 400, "invalid_state")  # Refunded: nothing left


def test_more_than_is_left_is_refused_and_reserved_amounts_count(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    body = _problem(_refund(api, pi, 1001, "a"), 400, "amount_exceeds_refundable")
    assert "1000" in body["detail"]
    assert _refund(api, pi, 600, "b").status_code == 200
    _problem(_refund(api, pi, 401, "c"), 400, "amount_exceeds_refundable")
    _problem(_refund(api, world.pi(world.authorized()), 1, "d"), 400, "invalid_state")  # Created
    _problem(_refund(api, pi, 0, "e"), 400, "validation_error")
    _problem(_refund(api, pi, "ten", "f"), 400, "validation_error")  # type: ignore[arg-type]
    assert _pi(api, pi)["refundedAmount"] == 600


def test_a_declined_refund_is_a_problem_and_releases_its_reservation(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    body = _problem(_refund(api, pi, 105, "a"), 400, "refund_declined")  # sandbox: Do not honour
    assert "Do not honour" in body["detail"]
    assert "refundId" not in body
    assert _refund(api, pi, 1000, "b").status_code == 200  # nothing was reserved any more


def test_a_failed_refund_is_a_503_and_releases_its_reservation(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    r = _problem(_refund(api, pi, 198, "a"), 503, "service_unavailable")  # Acquirer unavailable
    assert "nothing was refunded" in r["detail"]
    again = _refund(api, pi, 198, "a")  # a 503 is not kept: the retry makes a new refund
    assert again.status_code == 503
    assert _refund(api, pi, 1000, "b").status_code == 200


def test_an_unknown_outcome_settles_by_recovery_once(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    first = _refund(api, pi, 199, "lost")  # sandbox: refunded, answer lost
    _problem(first, 503, "service_unavailable")
    assert int(first.headers["Retry-After"]) >= 1
    _problem(_refund(api, pi, 199, "lost"), 409, "refund_in_progress")  # its own retry
    world.advance(seconds=11)  # past the acquirer call's timeout: the outcome is unknown
    other = _problem(_refund(api, pi, 1, "other"), 409, "refund_in_progress")
    assert other["status"] == 409
    _problem(api.post(f"/payment-intents/{pi}/reversal"), 409, "refund_in_progress")
    report = world.services.sweeper.run_once()
    assert report.recovered_refunds == 1
    assert world.services.sweeper.run_once().recovered_refunds == 0  # once
    settled = _refund(api, pi, 199, "lost")
    assert settled.status_code == 200, settled.text
    assert _pi(api, pi)["refundedAmount"] == 199
    again = _refund(api, pi, 199, "lost")
    assert again.json()["refundId"] == settled.json()["refundId"]
    keys = [k for k in world.storage.tables.sandbox_ledger if k.startswith("refund:")]
    assert len(keys) == 1  # one refund at the acquirer, asked twice


def test_the_refund_key_is_required_scoped_to_the_payment_intent_and_replays(
    world: World,
) -> None:
    api, _ = world.clients()
    pi, other = _captured(world), _captured(world)
    missing = _problem(_refund(api, pi, 100, None), 400, "validation_error")
    assert "idempotencyKey" in missing["errors"]
    _problem(_refund(api, pi, 100, "x" * 101), 400, "validation_error")
    first = _refund(api, pi, 100, "same")
    replay = _refund(api, pi, 100, "same")
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    _problem(_refund(api, pi, 200, "same"), 422, "idempotency_key_mismatch")
    elsewhere = _refund(api, other, 100, "same")  # the same key on another payment intent
    assert elsewhere.status_code == 200
    assert elsewhere.json()["refundId"] != first.json()["refundId"]
    # Idempotency-Key is accepted instead; idempotencyKey wins when both are sent.
    alt = api.post(
        f"/payment-intents/{pi}/refunds", json={"amount": 50}, headers={"Idempotency-Key": "alt"}
    )
    assert alt.status_code == 200
    both = api.post(
        f"/payment-intents/{pi}/refunds",
        json={"amount": 100},
        headers={"Idempotency-Key": "alt", "idempotencyKey": "same"},
    )
    assert both.json() == first.json()  # replayed under idempotencyKey "same"
    assert _pi(api, pi)["refundedAmount"] == 150


def test_a_reversal_undoes_a_capture_with_nothing_refunded(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    r = api.post(f"/payment-intents/{pi}/reversal")
    assert r.status_code == 200, r.text
    assert not errors_of("Reversal", r.json())
    assert r.json()["message"] == "Reversed"
    assert r.json()["reversalId"].startswith("rvs_")
    after = _pi(api, pi)
    assert after["status"] == "Reversed"
    assert after["paymentEvents"][-1]["eventType"] == "Reversed"
    assert ("payment_intent.status_updated", "Reversed") in world.events()
    _problem(api.post(f"/payment-intents/{pi}/reversal"), 409, "invalid_state")
    _problem(_refund(api, pi, 1, "a"), 400, "invalid_state")
    refunded = _captured(world)
    assert _refund(api, refunded, 1, "b").status_code == 200
    _problem(api.post(f"/payment-intents/{refunded}/reversal"), 409, "invalid_state")
    created = world.pi(world.authorized())
    _problem(api.post(f"/payment-intents/{created}/reversal"), 409, "invalid_state")
    # A reversal id is not a refund.
    _problem(api.get(f"/payment-intents/refunds/{r.json()['reversalId']}"), 404, "not_found")


def test_accounts_see_only_their_own(world: World) -> None:
    api, _ = world.clients()
    pi = _captured(world)
    refund = _refund(api, pi, 100, "a").json()
    _, _, other_key = world.services.accounts.create("other", world.account.mode)
    other, _ = world.clients(other_key)
    _problem(_refund(other, pi, 100, "a"), 404, "not_found")
    _problem(other.post(f"/payment-intents/{pi}/reversal"), 404, "not_found")
    _problem(other.get(f"/payment-intents/refunds/{refund['refundId']}"), 404, "not_found")
    _problem(api.get("/payment-intents/refunds/rfnd_nope"), 404, "not_found")
