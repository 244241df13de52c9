"""ProblemDetails responses: the body built from ``errors.TABLE``, and the handlers that turn every
failure (a raised error, Starlette's own 404/405, an unexpected exception) into one.

Bodies are the union of Dojo's two shapes plus a stable ``code``; ``errors`` appears only on
validation_error. A 500 carries nothing but its code and trace id, and is logged with its trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cardkeep.domain.card import mask_pans
from cardkeep.domain.errors import Code
from cardkeep.logs import get_logger
from cardkeep.web import errors
from cardkeep.web.errors import MethodNotAllowed, NoSuchEndpoint, NotImplementedYet, Problem
from cardkeep.web.trace import trace_id_of

log = get_logger("cardkeep.http")

_RFC7231 = "https://tools.ietf.org/html/rfc7231#section-"
TYPES = {
    400: _RFC7231 + "6.5.1",
    401: "https://tools.ietf.org/html/rfc7235#section-3.1",
    403: _RFC7231 + "6.5.3",
    404: _RFC7231 + "6.5.4",
    405: _RFC7231 + "6.5.5",
    409: _RFC7231 + "6.5.8",
    413: _RFC7231 + "6.5.11",
    414: _RFC7231 + "6.5.12",
    422: "https://tools.ietf.org/html/rfc4918#section-11.2",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    431: "https://tools.ietf.org/html/rfc6585#section-5",
    500: _RFC7231 + "6.6.1",
    503: _RFC7231 + "6.6.4",
}


def encode(problem: Problem, trace_id: str) -> bytes:
    """The ProblemDetails body of ``problem``, as JSON bytes."""
    status = problem.status
    body: dict[str, Any] = {
        "type": TYPES[status],
        "title": errors.TITLES[problem.code],
        "status": status,
    }
    # Ids, keys and messages may echo what the client sent: nothing that looks like a card number
    # leaves in clear, whichever code raised the problem.
    if problem.code is not Code.INTERNAL_ERROR and problem.detail:
        body["detail"] = mask_pans(problem.detail)
    body["traceId"] = trace_id
    body["code"] = problem.code.value
    if problem.errors is not None:
        body["errors"] = {
            mask_pans(path): [mask_pans(m) for m in messages]
            for path, messages in problem.errors.items()
        }
    return msgspec.json.encode(body)


def render(problem: Problem, trace_id: str) -> Response:
    headers = dict(problem.headers or {})
    if problem.status == 401:
        headers.setdefault("WWW-Authenticate", 'Basic realm="cardkeep"')
    return Response(
        encode(problem, trace_id),
        status_code=problem.status,
        headers=headers,
        media_type="application/problem+json",
    )


def internal_error_response(trace_id: str) -> Response:
    return render(errors.from_exception(Exception()), trace_id)


def problem_for(exc: Exception, trace: str, request: Request) -> Response:
    problem = errors.from_exception(exc)
    if problem.code is Code.INTERNAL_ERROR:
        log.error(
            "unhandled_error",
            traceId=trace,
            path=request.url.path,
            error_type=type(exc).__name__,
            exc_info=exc,
        )
    return render(problem, trace)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) as ProblemDetails."""
    assert isinstance(exc, HTTPException)
    trace = trace_id_of(request)
    problem: Exception
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        problem = MethodNotAllowed(
            f"The method {request.method} is not allowed here.", {"Allow": allow}
        )
    else:
        problem = NoSuchEndpoint("No such endpoint.")
    return problem_for(problem, trace, request)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Starlette's last resort (ServerErrorMiddleware) renders through the same table."""
    return problem_for(exc, trace_id_of(request), request)


def not_implemented(feature: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return problem_for(
            NotImplementedYet(f"{feature} is not served by cardkeep yet."),
            trace_id_of(request),
            request,
        )

    return endpoint
