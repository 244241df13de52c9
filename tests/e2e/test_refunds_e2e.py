"""Refunds and reversal over real HTTP, on both engines (CONTRACT §5.5-5.7, §6): partial and full
refunds, the amount rules, the sandbox acquirer's outcomes by amount, an unknown outcome settled
once by recovery on the account clock, Dojo's ``idempotencyKey``, reversal, reads, Dojo's shapes
for every 2xx body and ProblemDetails for every refusal, and the signed webhooks.

The server here waits 2 s (real time) before an acquirer call's outcome counts as unknown, and
600 s on the account's clock before recovery asks again, so a test decides when recovery runs
(``POST /sandbox/clock/advance``)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from cardkeep.webhooks import verify
from tests.e2e.harness import Merchant, Server, run_server
from tests.e2e.receiver import Receiver, receiver
from tests.e2e.test_contract import assert_problem, assert_valid
from tests.postgres import throwaway_database

CALL_TIMEOUT = 2.0  # seconds: CARDKEEP_ACQUIRER_TIMEOUT
RECOVERY_AFTER = 600  # seconds on the account clock: CARDKEEP_RECOVERY_AFTER
SLOW_RECOVERY = {
    "CARDKEEP_ACQUIRER_TIMEOUT": str(CALL_TIMEOUT),
    "CARDKEEP_RECOVERY_AFTER": str(RECOVERY_AFTER),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp(f"refunds-{request.param}")
    if request.param == "sqlite":
        with run_server(data_dir, env=SLOW_RECOVERY) as server:
            yield server
        return
    with (
        throwaway_database("refunds") as url,
        run_server(data_dir, env=SLOW_RECOVERY, database_url=url) as server,
    ):
        yield server


@pytest.fixture
def m(srv: Server) -> Iterator[Merchant]:
    merchant = Merchant(srv, srv.create_account("refunds"))
    yield merchant
    merchant.close()


def captured(m: Merchant, value: int = 1000) -> str:
    si = m.authorized_si()
    pi = m.create_pi(si["id"], value)
    assert pi.status_code == 200, pi.text
    charged = m.charge(pi.json()["id"])
    assert charged.status_code == 200, charged.text
    assert charged.json()["status"] == "Successful", charged.text
    return str(pi.json()["id"])


def refund(
    m: Merchant,
    pi: str,
    amount: int,
    key: str | None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["idempotencyKey"] = key
    return m.api.post(
        f"/payment-intents/{pi}/refunds", json={"amount": amount, **body}, headers=sent
    )


def reverse(m: Merchant, pi: str) -> httpx.Response:
    return m.api.post(f"/payment-intents/{pi}/reversal")


def read_pi(m: Merchant, pi: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_valid("PaymentIntent", m.api.get(f"/payment-intents/{pi}"))
    return body


def ledger_rows(srv: Server, pi: str) -> list[tuple[str, str, int, str]]:
    """(kind, result, amount, idempotency key) of the refunds and reversals of ``pi``'s capture
    in the sandbox acquirer's ledger, oldest first."""
    rows = srv.sql(
        "SELECT kind, result, amount, idempotency_key FROM sandbox_ledger"
        " WHERE capture_key LIKE ? ORDER BY created_at_us, idempotency_key",
        (f"charge:{pi}:%",),
    )
    return [(str(k), str(r), int(a), str(i)) for k, r, a, i in rows]


def poll(
    send: Callable[[], httpx.Response], until: Callable[[httpx.Response], bool], timeout: float
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = send()
        if until(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_partial_refunds_accumulate_then_refund_in_full(m: Merchant, srv: Server) -> None:
    pi = captured(m)
    first = refund(m, pi, 300, "a", refundReason="Charged by mistake", notes="table 4")
    body = assert_valid("Refund", first)
    assert body["refundId"].startswith("rfnd_")
    assert (body["paymentIntentId"], body["refundReason"], body["notes"]) == (
        pi,
        "Charged by mistake",
        "table 4",
    )
    after = read_pi(m, pi)
    assert (after["status"], after["refundedAmount"]) == ("Captured", 300)
    assert after["paymentEvents"][-1]["eventType"] == "Refunded"
    assert assert_valid("Refund", m.api.get(f"/payment-intents/refunds/{body['refundId']}")) == body
    assert_problem(refund(m, pi, 701, "too-much"), 400, "amount_exceeds_refundable")
    assert_problem(reverse(m, pi), 409, "invalid_state")  # something is refunded already
    rest = assert_valid("Refund", refund(m, pi, 700, "b"))
    assert rest["refundReason"] is None
    assert rest["notes"] is None
    done = read_pi(m, pi)
    assert (done["status"], done["refundedAmount"]) == ("Refunded", 1000)
    assert [e["eventType"] for e in done["paymentEvents"]].count("Refunded") == 2
    assert_problem(refund(m, pi, 1, "c"), 400, "invalid_state")  # nothing left: Refunded
    assert_problem(reverse(m, pi), 409, "invalid_state")
    ledger = ledger_rows(srv, pi)
    assert [(k, r, a) for k, r, a, _ in ledger] == [
        ("refund", "approved", 300),
        ("refund", "approved", 700),
    ]
    assert {i for *_, i in ledger} == {f"refund:{body['refundId']}", f"refund:{rest['refundId']}"}


def test_only_a_captured_payment_intent_is_refunded_or_reversed(m: Merchant) -> None:
    created = m.create_pi(m.authorized_si()["id"]).json()["id"]
    assert_problem(refund(m, created, 100, "a"), 400, "invalid_state")
    assert_problem(reverse(m, created), 409, "invalid_state")
    pi = captured(m)
    assert_problem(refund(m, pi, 0, "zero"), 400, "validation_error")
    assert_problem(refund(m, pi, 1001, "over"), 400, "amount_exceeds_refundable")
    assert_problem(refund(m, "pi_sandbox_AAAAAAAAAAAAAAAAAAAAAA", 1, "x"), 404, "not_found")
    assert_problem(m.api.get("/payment-intents/refunds/rfnd_nope"), 404, "not_found")
    assert read_pi(m, pi)["refundedAmount"] == 0


def test_declined_and_failed_refunds_move_nothing_and_release_the_amount(
    m: Merchant, srv: Server
) -> None:
    pi = captured(m, 2000)
    assert_problem(refund(m, pi, 1051, "insufficient"), 400, "refund_declined")
    assert_problem(refund(m, pi, 1005, "honour"), 400, "refund_declined")
    failed = assert_problem(refund(m, pi, 1098, "down"), 503, "service_unavailable")
    assert failed["status"] == 503
    assert int(refund(m, pi, 1098, "down2").headers["Retry-After"]) >= 1
    after = read_pi(m, pi)
    assert (after["status"], after["refundedAmount"]) == ("Captured", 0)
    assert "Refunded" not in [e["eventType"] for e in after["paymentEvents"]]
    whole = assert_valid("Refund", refund(m, pi, 2000, "all"))  # nothing stayed reserved
    assert read_pi(m, pi)["status"] == "Refunded"
    results = [(r, a) for _, r, a, _ in ledger_rows(srv, pi)]
    expected = [("declined", 1051), ("declined", 1005), ("failed", 1098), ("failed", 1098)]
    assert sorted(results) == sorted([*expected, ("approved", 2000)])
    assert whole["paymentIntentId"] == pi


def test_an_unknown_outcome_is_settled_once_by_recovery(m: Merchant, srv: Server) -> None:
    pi = captured(m)
    lost = refund(m, pi, 199, "lost")  # the sandbox refunds it and loses the answer
    assert_problem(lost, 503, "service_unavailable")
    assert int(lost.headers["Retry-After"]) >= 1
    retry = refund(m, pi, 199, "lost")
    assert_problem(retry, 409, "refund_in_progress")
    assert int(retry.headers["Retry-After"]) >= 1
    # Once the acquirer call's timeout has passed, its outcome is unknown: nothing else starts.
    blocked = poll(
        lambda: reverse(m, pi),
        lambda r: r.status_code != 409 or r.json()["code"] == "refund_in_progress",
        4 * CALL_TIMEOUT,
    )
    assert_problem(blocked, 409, "refund_in_progress")
    assert_problem(refund(m, pi, 1, "other"), 409, "refund_in_progress")
    # Recovery waits for the account clock: for now it stays unsettled.
    for _ in range(5):
        assert_problem(refund(m, pi, 199, "lost"), 409, "refund_in_progress")
        time.sleep(0.2)
    assert read_pi(m, pi)["refundedAmount"] == 0
    assert m.advance(RECOVERY_AFTER + 1).status_code == 200
    settled = poll(lambda: refund(m, pi, 199, "lost"), lambda r: r.status_code != 409, 20)
    body = assert_valid("Refund", settled)
    again = assert_valid("Refund", refund(m, pi, 199, "lost"))
    assert again["refundId"] == body["refundId"]
    after = read_pi(m, pi)
    assert (after["status"], after["refundedAmount"]) == ("Captured", 199)
    assert [e["eventType"] for e in after["paymentEvents"]].count("Refunded") == 1
    assert ledger_rows(srv, pi) == [("refund", "approved", 199, f"refund:{body['refundId']}")]
    assert assert_valid("Refund", m.api.get(f"/payment-intents/refunds/{body['refundId']}")) == body
    # Settled: the others may go on.
    assert assert_valid("Refund", refund(m, pi, 1, "other"))["refundId"] != body["refundId"]
    assert read_pi(m, pi)["refundedAmount"] == 200


def test_the_refund_key_is_required_replayed_and_scoped_to_the_payment_intent(
    m: Merchant, srv: Server
) -> None:
    pi, other = captured(m), captured(m)
    missing = assert_problem(refund(m, pi, 100, None), 400, "validation_error")
    assert "idempotencyKey" in missing["errors"]
    assert_problem(refund(m, pi, 100, "x" * 101), 400, "validation_error")
    first = refund(m, pi, 100, "same", notes="n")
    body = assert_valid("Refund", first)
    assert "Idempotent-Replayed" not in first.headers
    replay = refund(m, pi, 100, "same", notes="n")
    assert assert_valid("Refund", replay) == body
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_problem(refund(m, pi, 200, "same", notes="n"), 422, "idempotency_key_mismatch")
    assert_problem(refund(m, pi, 100, "same", notes="other"), 422, "idempotency_key_mismatch")
    elsewhere = assert_valid("Refund", refund(m, other, 100, "same", notes="n"))
    assert elsewhere["refundId"] != body["refundId"]
    assert elsewhere["paymentIntentId"] == other
    # Idempotency-Key is accepted instead; idempotencyKey wins when both are sent.
    alt = assert_valid("Refund", refund(m, pi, 50, None, {"Idempotency-Key": "alt"}))
    assert refund(m, pi, 50, None, {"Idempotency-Key": "alt"}).json() == alt
    both = refund(m, pi, 100, "same", {"Idempotency-Key": "alt"}, notes="n")
    assert assert_valid("Refund", both) == body
    assert both.headers["Idempotent-Replayed"] == "true"
    assert read_pi(m, pi)["refundedAmount"] == 150
    assert read_pi(m, other)["refundedAmount"] == 100
    assert len(ledger_rows(srv, pi)) == 2
    assert len(ledger_rows(srv, other)) == 1


def test_concurrent_retries_with_one_key_refund_once(m: Merchant, srv: Server) -> None:
    pi = captured(m)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: refund(m, pi, 400, "once"), range(10)))
    ids = set()
    for r in answers:
        if r.status_code == 200:
            ids.add(assert_valid("Refund", r)["refundId"])
        else:
            assert_problem(r, 409, "idempotency_in_progress")
    assert len(ids) == 1, [r.text for r in answers]
    assert read_pi(m, pi)["refundedAmount"] == 400
    assert [(k, r, a) for k, r, a, _ in ledger_rows(srv, pi)] == [("refund", "approved", 400)]


def test_a_reversal_undoes_a_capture_with_nothing_refunded(m: Merchant, srv: Server) -> None:
    pi = captured(m)
    body = assert_valid("Reversal", reverse(m, pi))
    assert body["message"] == "Reversed"
    assert body["reversalId"].startswith("rvs_")
    after = read_pi(m, pi)
    assert after["status"] == "Reversed"
    assert after["paymentEvents"][-1]["eventType"] == "Reversed"
    assert_problem(reverse(m, pi), 409, "invalid_state")
    assert_problem(refund(m, pi, 1, "a"), 400, "invalid_state")
    assert_problem(m.api.get(f"/payment-intents/refunds/{body['reversalId']}"), 404, "not_found")
    assert ledger_rows(srv, pi) == [
        ("reversal", "approved", 1000, f"reversal:{body['reversalId']}")
    ]


def test_accounts_see_only_their_own(m: Merchant, srv: Server) -> None:
    pi = captured(m)
    mine = assert_valid("Refund", refund(m, pi, 100, "a"))
    other = Merchant(srv, srv.create_account("someone-else"))
    try:
        assert_problem(refund(other, pi, 100, "a"), 404, "not_found")
        assert_problem(reverse(other, pi), 404, "not_found")
        got = other.api.get(f"/payment-intents/refunds/{mine['refundId']}")
        assert_problem(got, 404, "not_found")
    finally:
        other.close()
    assert read_pi(m, pi)["refundedAmount"] == 100


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def test_refunded_and_reversed_are_delivered_signed(m: Merchant, hook: Receiver) -> None:
    sub = m.api.post(
        "/webhooks", json={"events": ["payment_intent.status_updated"], "url": hook.url}
    )
    assert sub.status_code == 200, sub.text
    secret = sub.json()["secrets"][0]["value"]
    refunded, reversed_ = captured(m), captured(m)
    assert_valid("Refund", refund(m, refunded, 400, "part"))  # still Captured: no new status
    assert_valid("Refund", refund(m, refunded, 600, "rest"))
    assert_valid("Reversal", reverse(m, reversed_))

    def statuses(posts: list[Any]) -> set[tuple[str, str]]:
        seen = set()
        for post in posts:
            data = json.loads(post.body)["data"]
            seen.add((data["paymentIntentId"], data["paymentStatus"]))
        return seen

    wanted = {(refunded, "Refunded"), (reversed_, "Reversed")}
    posts = hook.wait_for(lambda seen: wanted <= statuses(seen))
    whsec = "whsec_" + base64.b64encode(secret.encode("utf-8")).decode()
    mine = [
        p for p in posts if json.loads(p.body)["data"]["paymentIntentId"] in {refunded, reversed_}
    ]
    for post in mine:
        doc = verify(post.body, {"Dojo-Signature": post.headers["dojo-signature"]}, secret)
        assert doc["event"] == "payment_intent.status_updated"
        assert doc["accountId"] == sub.json()["accountId"]
        std = {k: v for k, v in post.headers.items() if k.startswith("webhook-")}
        assert Webhook(whsec).verify(post.body, std)["id"] == doc["id"]
    counted = [json.loads(p.body)["data"]["paymentStatus"] for p in mine]
    assert counted.count("Refunded") == 1
    assert counted.count("Reversed") == 1


def recovered_capture(m: Merchant, value: int) -> str:
    """A payment intent whose charge's answer was lost (amount ending 99), captured by recovery
    once the account clock has moved past the recovery delay."""
    pi = m.create_pi(m.authorized_si()["id"], value).json()["id"]
    assert_problem(m.charge(pi), 503, "service_unavailable")
    return str(pi)


def wait_captured(m: Merchant, pis: list[str]) -> None:
    for pi in pis:
        got = poll(
            lambda pi=pi: m.api.get(f"/payment-intents/{pi}"),
            lambda r: r.json()["status"] != "Authorized" and r.json()["status"] != "Created",
            20,
        )
        assert got.json()["status"] == "Captured", got.text


def test_a_capture_settled_by_recovery_is_refunded_and_reversed(m: Merchant, srv: Server) -> None:
    """The refund names the attempt that captured; a reversal of 1099 loses its answer too, and
    is settled once by recovery, a refund waiting meanwhile."""
    to_refund, to_reverse = recovered_capture(m, 1099), recovered_capture(m, 1099)
    assert m.advance(RECOVERY_AFTER + 1).status_code == 200
    wait_captured(m, [to_refund, to_reverse])
    part = assert_valid("Refund", refund(m, to_refund, 500, "after-recovery"))
    after = read_pi(m, to_refund)
    assert (after["status"], after["refundedAmount"]) == ("Captured", 500)
    assert [(k, r, a) for k, r, a, _ in ledger_rows(srv, to_refund)] == [
        ("refund", "approved", 500)
    ]
    assert part["paymentIntentId"] == to_refund

    lost = reverse(m, to_reverse)  # its amount, the capture's 1099, loses the answer
    assert_problem(lost, 503, "service_unavailable")
    assert int(lost.headers["Retry-After"]) >= 1
    assert_problem(reverse(m, to_reverse), 409, "refund_in_progress")
    assert_problem(refund(m, to_reverse, 1, "meanwhile"), 409, "refund_in_progress")
    assert read_pi(m, to_reverse)["status"] == "Captured"
    assert m.advance(RECOVERY_AFTER + 1).status_code == 200
    done = poll(
        lambda: m.api.get(f"/payment-intents/{to_reverse}"),
        lambda r: r.json()["status"] != "Captured",
        20,
    )
    assert done.json()["status"] == "Reversed", done.text
    assert [e["eventType"] for e in read_pi(m, to_reverse)["paymentEvents"]].count("Reversed") == 1
    ((kind, result, amount, key),) = ledger_rows(srv, to_reverse)
    assert (kind, result, amount, key[:13]) == ("reversal", "approved", 1099, "reversal:rvs_")
    assert_problem(reverse(m, to_reverse), 409, "invalid_state")
    assert_problem(refund(m, to_reverse, 1, "meanwhile"), 400, "invalid_state")


def test_the_key_of_an_unsettled_refund_with_another_body_is_a_mismatch(
    m: Merchant, srv: Server
) -> None:
    """The 503 of a lost answer is not kept, so the key runs again: a different body with it is
    another request (422), never an answer from the refund that the first body claimed, and the
    first body's own retry still gets that refund once it is settled."""
    pi = captured(m)
    assert_problem(refund(m, pi, 199, "lost"), 503, "service_unavailable")
    assert_problem(refund(m, pi, 200, "lost"), 422, "idempotency_key_mismatch")
    assert_problem(refund(m, pi, 199, "lost", notes="other"), 422, "idempotency_key_mismatch")
    assert_problem(refund(m, pi, 199, "lost"), 409, "refund_in_progress")
    assert m.advance(RECOVERY_AFTER + 1).status_code == 200
    settled = poll(lambda: refund(m, pi, 199, "lost"), lambda r: r.status_code != 409, 20)
    body = assert_valid("Refund", settled)
    assert_problem(refund(m, pi, 200, "lost"), 422, "idempotency_key_mismatch")
    assert assert_valid("Refund", refund(m, pi, 199, "lost")) == body
    assert read_pi(m, pi)["refundedAmount"] == 199
    assert [(k, r, a) for k, r, a, _ in ledger_rows(srv, pi)] == [("refund", "approved", 199)]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"amount": -1},
        {"amount": 1.5},
        {"amount": True},
        {"amount": 2**63},
        {"amount": {"value": 100, "currencyCode": "GBP"}},
        {"amount": 100, "refundReason": "x" * 2000},
        {"amount": 100, "notes": 5},
        {"amount": 100, "previousTransactionId": "p" * 101},
        [],
        None,
    ],
)
def test_a_bad_refund_body_is_a_validation_error(m: Merchant, body: Any) -> None:
    pi = captured(m)
    sent = m.api.post(
        f"/payment-intents/{pi}/refunds", json=body, headers={"idempotencyKey": "bad"}
    )
    assert_problem(sent, 400, "validation_error")
    assert read_pi(m, pi)["refundedAmount"] == 0
