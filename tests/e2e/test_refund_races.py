"""Refunds move money at most once and never past the capture, on both engines, under races.

Against ``serve --workers 2`` (SQLite file and PostgreSQL), with the captured payment intents made
in bulk first:

- 20 concurrent refunds of 300 (each its own ``idempotencyKey``) of a capture of 1000, over 100
  trials per engine: exactly three answer 200 and seventeen 400 ``amount_exceeds_refundable``, no
  5xx; the payment intent ends ``Captured`` with ``refundedAmount`` 900; the sandbox acquirer's
  ledger never holds more approved refund amount than the capture for any ``capture_key``.
- A refund racing a reversal of one captured payment intent, over 200 trials per engine: exactly
  one wins; the other gets the contract's refusal (a refund: 400 ``invalid_state`` after the
  reversal, 409 ``refund_in_progress`` while it is pending; a reversal: 409 ``invalid_state``);
  the ledger never approves both.
- 10 concurrent sends of one refund (one ``idempotencyKey``), over 50 trials per engine: one
  refund at the acquirer, every 200 the same Refund.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.contract.schemas import errors_of
from tests.e2e.harness import Server, run_server
from tests.e2e.test_races import PATIENT, Racer, _trials
from tests.postgres import throwaway_database

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("REFUND_RACE_TRIALS", "100"))
REVERSAL_TRIALS = int(os.environ.get("REFUND_REVERSAL_TRIALS", "200"))
RETRY_TRIALS = int(os.environ.get("REFUND_RETRY_TRIALS", "50"))
SETUP_IN_FLIGHT = 16  # captured payment intents made at once, before the races
CAPTURE = 1000
REFUND = 300
REFUNDS_PER_TRIAL = 20
WINNERS = CAPTURE // REFUND  # 3

T = TypeVar("T")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("refund-race")
    if request.param == "sqlite":
        with run_server(data_dir, workers=2, env=PATIENT) as srv:
            yield srv
        return
    with (
        throwaway_database("refundrace") as url,
        run_server(data_dir, workers=2, env=PATIENT, database_url=url) as srv,
    ):
        yield srv


async def _at_once(count: int, limit: int, task: Callable[[int], Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> T:
        async with gate:
            return await task(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def _captured(racer: Racer, count: int, value: int = CAPTURE) -> list[str]:
    """``count`` payment intents of ``value``, each charged (Captured), made in bulk."""

    async def one(_: int) -> str:
        pi = await racer.create_pi(await racer.authorized_si(), value)
        r = await racer.charge(pi)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Successful", r.text
        return pi

    return await _at_once(count, SETUP_IN_FLIGHT, one)


async def _refund(racer: Racer, pi: str, amount: int, key: str) -> httpx.Response:
    return await racer.api().post(
        f"/payment-intents/{pi}/refunds", json={"amount": amount}, headers={"idempotencyKey": key}
    )


async def _reverse(racer: Racer, pi: str) -> httpx.Response:
    return await racer.api().post(f"/payment-intents/{pi}/reversal")


def _answer(r: httpx.Response) -> tuple[int, str]:
    """(status, problem code) of a refusal, (200, "") of a success: each checked for its shape."""
    if r.status_code == 200:
        return 200, ""
    media_type = r.headers.get("content-type", "").split(";")[0]
    if media_type != "application/problem+json":
        return r.status_code, f"not a problem: {media_type} {r.text[:200]}"
    body = r.json()
    errors = errors_of("ProblemDetails", body)
    if errors or body.get("status") != r.status_code:
        return r.status_code, f"bad problem {errors} {body}"
    return r.status_code, str(body["code"])


def _shape_errors(component: str, bodies: Sequence[Any]) -> list[list[str]]:
    return [e for e in (errors_of(component, b) for b in bodies) if e]


def _ledger(server: Server) -> dict[str, dict[str, int]]:
    """Per capture key: the captured amount, and the approved refunds and reversals of it, from
    the sandbox acquirer's ledger."""
    out: dict[str, dict[str, int]] = {}
    rows = server.sql(
        "SELECT idempotency_key, amount FROM sandbox_ledger WHERE kind = 'charge'"
        " AND result = 'approved'"
    )
    for key, amount in rows:
        out[str(key)] = {"capture": int(amount), "refund": 0, "reversal": 0, "rows": 0}
    moves = server.sql(
        "SELECT capture_key, kind, amount FROM sandbox_ledger"
        " WHERE kind IN ('refund', 'reversal') AND result = ?",
        ("approved",),
    )
    for capture_key, kind, amount in moves:
        entry = out.setdefault(
            str(capture_key), {"capture": 0, "refund": 0, "reversal": 0, "rows": 0}
        )
        entry[str(kind)] += int(amount)
        entry["rows"] += 1
    return out


def _capture_key(server: Server, pi: str) -> str:
    (key,) = [
        str(k)
        for (k,) in server.sql(
            "SELECT idempotency_key FROM sandbox_ledger WHERE kind = 'charge'"
            " AND result = 'approved' AND idempotency_key LIKE ?",
            (f"charge:{pi}:%",),
        )
    ]
    return key


def test_concurrent_refunds_never_refund_more_than_the_capture(two_workers: Server) -> None:
    key = two_workers.create_account("refund-racer")

    async def run() -> list[tuple[str, list[httpx.Response], dict[str, Any]]]:
        async with Racer([two_workers.api_url], two_workers.pci_url, key) as racer:
            pis = await _captured(racer, TRIALS)

            async def trial(i: int) -> tuple[str, list[httpx.Response], dict[str, Any]]:
                pi = pis[i]
                responses = await asyncio.gather(
                    *(_refund(racer, pi, REFUND, f"race-{i}-{n}") for n in range(REFUNDS_PER_TRIAL))
                )
                return pi, list(responses), await racer.get(f"/payment-intents/{pi}")

            return await _trials(TRIALS, trial)

    results = asyncio.run(run())
    assert len(results) == TRIALS
    expected = Counter({(200, ""): WINNERS, (400, "amount_exceeds_refundable"): 17})
    answers = [Counter(_answer(r) for r in responses) for _, responses, _ in results]
    overall = sum(answers, Counter())
    fives = sum(n for (status, _), n in overall.items() if status >= 500)
    assert fives == 0, (two_workers.engine, "5xx answers", overall)
    bad = [(pi, a) for (pi, _, _), a in zip(results, answers, strict=True) if a != expected]
    assert not bad, (two_workers.engine, overall, bad[:5])
    ledger = _ledger(two_workers)
    for pi, responses, after in results:
        won = [r.json() for r in responses if r.status_code == 200]
        assert not _shape_errors("Refund", won), _shape_errors("Refund", won)
        assert len({b["refundId"] for b in won}) == WINNERS
        assert {b["paymentIntentId"] for b in won} == {pi}
        assert not errors_of("PaymentIntent", after), errors_of("PaymentIntent", after)
        assert (after["status"], after["refundedAmount"]) == ("Captured", WINNERS * REFUND), after
        refunded = [e for e in after["paymentEvents"] if e["eventType"] == "Refunded"]
        assert len(refunded) == WINNERS, after["paymentEvents"]
        entry = ledger[_capture_key(two_workers, pi)]
        assert entry == {
            "capture": CAPTURE,
            "refund": WINNERS * REFUND,
            "reversal": 0,
            "rows": WINNERS,
        }, (pi, entry)
    over = {k: e for k, e in ledger.items() if e["refund"] + e["reversal"] > e["capture"]}
    assert not over, over


def test_a_refund_racing_a_reversal_one_wins(two_workers: Server) -> None:
    key = two_workers.create_account("reversal-racer")

    async def run() -> list[tuple[str, httpx.Response, httpx.Response, dict[str, Any]]]:
        async with Racer([two_workers.api_url], two_workers.pci_url, key) as racer:
            pis = await _captured(racer, REVERSAL_TRIALS)

            async def trial(i: int) -> tuple[str, httpx.Response, httpx.Response, dict[str, Any]]:
                pi = pis[i]
                # Half the trials refund in full, half in part.
                amount = CAPTURE if i % 2 else 400
                refunded, reversed_ = await asyncio.gather(
                    _refund(racer, pi, amount, f"rr-{i}"), _reverse(racer, pi)
                )
                return pi, refunded, reversed_, await racer.get(f"/payment-intents/{pi}")

            return await _trials(REVERSAL_TRIALS, trial)

    results = asyncio.run(run())
    ledger = _ledger(two_workers)
    tally: Counter[tuple[str, tuple[int, str], tuple[int, str]]] = Counter()
    for i, (pi, refunded, reversed_, after) in enumerate(results):
        refund_answer, reversal_answer = _answer(refunded), _answer(reversed_)
        won_refund, won_reversal = refund_answer[0] == 200, reversal_answer[0] == 200
        tally[(two_workers.engine, refund_answer, reversal_answer)] += 1
        assert won_refund != won_reversal, (i, refunded.text, reversed_.text)
        entry = ledger[_capture_key(two_workers, pi)]
        assert not errors_of("PaymentIntent", after), errors_of("PaymentIntent", after)
        amount = CAPTURE if i % 2 else 400
        if won_refund:
            assert not errors_of("Refund", refunded.json()), errors_of("Refund", refunded.json())
            assert reversal_answer == (409, "invalid_state"), (i, reversed_.text)
            status = "Refunded" if amount == CAPTURE else "Captured"
            assert (after["status"], after["refundedAmount"]) == (status, amount), after
            assert (entry["refund"], entry["reversal"]) == (amount, 0), entry
        else:
            body = reversed_.json()
            assert not errors_of("Reversal", body), errors_of("Reversal", body)
            assert (body["message"], body["reversalId"][:4]) == ("Reversed", "rvs_"), body
            assert refund_answer in {(400, "invalid_state"), (409, "refund_in_progress")}, (
                i,
                refunded.text,
            )
            assert after["status"] == "Reversed", after
            assert (entry["refund"], entry["reversal"]) == (0, CAPTURE), entry
        assert entry["rows"] == 1, entry
    # Both sides won some trials (the race is real), and the refusals were the contract's.
    assert any(refund[0] == 200 for _, refund, _ in tally), tally
    assert any(reversal[0] == 200 for _, _, reversal in tally), tally


def test_concurrent_retries_of_one_refund_refund_once(two_workers: Server) -> None:
    """10 concurrent sends of one refund (the same ``idempotencyKey`` and body) over both
    workers: one refund, every 200 the same one, the rest 409 ``idempotency_in_progress``."""
    key = two_workers.create_account("retry-racer")

    async def run() -> list[tuple[str, list[httpx.Response], dict[str, Any]]]:
        async with Racer([two_workers.api_url], two_workers.pci_url, key) as racer:
            pis = await _captured(racer, RETRY_TRIALS)

            async def trial(i: int) -> tuple[str, list[httpx.Response], dict[str, Any]]:
                pi = pis[i]
                responses = await asyncio.gather(
                    *(_refund(racer, pi, 400, f"retry-{i}") for _ in range(10))
                )
                return pi, list(responses), await racer.get(f"/payment-intents/{pi}")

            return await _trials(RETRY_TRIALS, trial)

    results = asyncio.run(run())
    ledger = _ledger(two_workers)
    overall = sum((Counter(_answer(r) for r in rs) for _, rs, _ in results), Counter())
    assert set(overall) <= {(200, ""), (409, "idempotency_in_progress")}, overall
    for pi, responses, after in results:
        won = [r.json() for r in responses if r.status_code == 200]
        assert won, [r.text for r in responses]
        assert not _shape_errors("Refund", won), _shape_errors("Refund", won)
        assert len({b["refundId"] for b in won}) == 1, won
        assert (after["status"], after["refundedAmount"]) == ("Captured", 400), after
        entry = ledger[_capture_key(two_workers, pi)]
        assert (entry["refund"], entry["rows"]) == (400, 1), (pi, entry)
