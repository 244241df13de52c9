"""The HTTP edge in-process: a failure nobody anticipated is a bare ProblemDetails 500 with a
trace id, no stack trace, and no card data in the log line."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardkeep import logs
from cardkeep.web.common import assemble
from cardkeep.web.credentials import basic_credential
from cardkeep.web.release import resolve_release
from cardkeep.web.trace import TRACEPARENT, new_trace_id, survives_redaction
from tests.world import SyncClient, captured_log


@contextmanager
def _one_route(endpoint: Callable[[Request], Awaitable[Response]]) -> Iterator[SyncClient]:
    """A client of the API listener's edge with ``endpoint`` at ``/route``."""
    app = assemble([Route("/route", endpoint)], "api")
    client = SyncClient(app, "http://api.cardkeep.test", {})
    try:
        yield client
    finally:
        client.close()


def test_unexpected_exception_is_a_bare_problem_500() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("card 5200000000001005 went wrong")

    with captured_log() as stream, _one_route(boom) as client:
        r = client.get("/route", headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body == {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.6.1",
        "title": "Internal Server Error",
        "status": 500,
        "traceId": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "code": "internal_error",
    }
    logged = stream.getvalue()
    assert "5200000000001005" not in logged
    assert "520000******1005" in logged
    assert any(json.loads(line).get("event") == "unhandled_error" for line in logged.splitlines())


def test_version_header_resolution() -> None:
    assert resolve_release("2025-09-10") == "2025-09-10"
    assert resolve_release("2026-02-27") == "2025-09-10"
    assert resolve_release("2024-03-01") == "2024-02-05"
    assert resolve_release("2022-04-07T00:00:00+00:00") == "2022-04-07"


def test_basic_credentials_in_both_forms() -> None:
    assert basic_credential("Basic sk_sandbox_abc") == "sk_sandbox_abc"
    assert (
        basic_credential("basic c2tfc2FuZGJveF9hYmM6") == "sk_sandbox_abc"
    )  # base64("sk_sandbox_abc:")
    assert basic_credential("Bearer sk_sandbox_abc") is None
    assert basic_credential(None) is None
    assert basic_credential("Basic ") is None


# A trace id whose hex digits form a Luhn-valid run (0397647290550, joined to the span id's 2 by
# the dash): the log's redaction masked it, so its access-log line could not be found (found by CI).
MASKED_BY_REDACTION = "00-989bd3507a208eb6cbf0397647290550-2e3d79478a276c4f-01"


def test_a_trace_id_that_redaction_would_change_is_drawn_again() -> None:
    assert logs.scrub(MASKED_BY_REDACTION) != MASKED_BY_REDACTION
    draws = iter(
        [
            bytes.fromhex("4111111111111111" + "ab" * 8),  # a PAN in the trace id's digits
            bytes.fromhex("cd" * 8),
            bytes.fromhex("ab" * 16),
            bytes.fromhex("cd" * 8),
        ]
    )
    trace = new_trace_id(lambda n: next(draws))
    assert trace == "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


def test_the_access_log_line_carries_the_trace_id_the_response_names() -> None:
    async def ok(request: Request) -> Response:
        return Response("ok")

    sent = [MASKED_BY_REDACTION, "00-4111111111111111" + "a" * 16 + "-" + "b" * 16 + "-01"]
    with captured_log() as stream, _one_route(ok) as client:
        answered = [
            client.get("/route", headers={"traceparent": t}).headers["traceparent"] for t in sent
        ]
        answered += [client.get("/route").headers["traceparent"] for _ in range(300)]
    assert not set(sent) & set(answered)  # replaced, not echoed
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = [line["traceId"] for line in lines if line.get("event") == "request"]
    assert logged == answered
    assert all(TRACEPARENT.match(t) and survives_redaction(t) for t in answered)
    assert "4111111111111111" not in stream.getvalue()
