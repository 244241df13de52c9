"""The HTTP edge's pure rules: which request heads are refused with what, and the connection
budget. Over real sockets: ``tests/e2e/test_http_limits.py``."""

from __future__ import annotations

import h11

from cardkeep.http_server import ConnectionBudget, Limits
from cardkeep.web.errors import HeaderFieldsTooLarge, UriTooLong

LIMITS = Limits()


def request(target: bytes = b"/", headers: list[tuple[bytes, bytes]] | None = None) -> h11.Request:
    return h11.Request(method="GET", target=target, headers=headers or [(b"Host", b"x")])


def test_the_request_line_may_take_8_kib_without_its_crlf() -> None:
    fixed = len(b"GET  HTTP/1.1")
    assert LIMITS.refusal(request(b"/" * (8192 - fixed))) is None
    assert isinstance(LIMITS.refusal(request(b"/" * (8193 - fixed))), UriTooLong)


def test_headers_may_take_16_kib_and_100_fields() -> None:
    host = (b"Host", b"x")  # 1 + 4 + 4 bytes with ": " and CRLF
    filler = (b"X", b"v" * (16384 - 9 - 5))
    assert LIMITS.refusal(request(headers=[host, filler])) is None
    over = (b"X", b"v" * (16384 - 9 - 4))
    assert isinstance(LIMITS.refusal(request(headers=[host, over])), HeaderFieldsTooLarge)
    hundred = [host, *((b"X-%d" % i, b"v") for i in range(99))]
    assert LIMITS.refusal(request(headers=hundred)) is None
    refusal = LIMITS.refusal(request(headers=[*hundred, (b"X-One", b"more")]))
    assert isinstance(refusal, HeaderFieldsTooLarge)
    assert "100 headers" in refusal.detail


def test_an_overflowing_head_is_a_long_line_or_too_many_header_bytes() -> None:
    assert LIMITS.head_bytes == 8192 + 16384 + 4
    assert isinstance(LIMITS.overflow(b"GET /" + b"a" * 30_000), UriTooLong)
    assert isinstance(LIMITS.overflow(b"GET /" + b"a" * 8200 + b"\r\nHost: x"), UriTooLong)
    long_headers = b"GET / HTTP/1.1\r\nX: " + b"v" * 30_000
    assert isinstance(LIMITS.overflow(long_headers), HeaderFieldsTooLarge)


def test_the_budget_admits_up_to_its_limit_and_again_after_a_release() -> None:
    budget = ConnectionBudget(2)
    assert budget.take()
    assert budget.take()
    assert not budget.take()
    budget.release()
    assert budget.take()
    assert budget.open == 2
