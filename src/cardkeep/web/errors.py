"""THE table from error code to HTTP status and title, and the ProblemDetails body built from it.

This is the only module that knows HTTP statuses. Bodies are the union of Dojo's two shapes plus a
stable ``code``; ``errors`` appears only on validation_error. A 500 carries nothing but its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.responses import Response

from cardkeep.domain.errors import DomainError, Unavailable, ValidationFailed

_RFC7231 = "https://tools.ietf.org/html/rfc7231#section-"
TYPES = {
    400: _RFC7231 + "6.5.1",
    401: "https://tools.ietf.org/html/rfc7235#section-3.1",
    403: _RFC7231 + "6.5.3",
    404: _RFC7231 + "6.5.4",
    405: _RFC7231 + "6.5.5",
    409: _RFC7231 + "6.5.8",
    413: _RFC7231 + "6.5.11",
    422: "https://tools.ietf.org/html/rfc4918#section-11.2",
    500: _RFC7231 + "6.6.1",
    503: _RFC7231 + "6.6.4",
}

TABLE: dict[str, tuple[int, str]] = {
    "validation_error": (400, "One or more validation errors occurred."),
    "invalid_version": (400, "The version header is missing or not valid."),
    "card_data_not_accepted": (400, "Card data goes to the PCI listener."),
    "invalid_state": (400, "The operation is not allowed in the object's current status."),
    "setup_intent_not_usable": (400, "The setup intent cannot be used for this payment."),
    "not_merchant_initiated": (400, "The payment intent is not merchant-initiated."),
    "unauthorized": (401, "Unauthorized"),
    "client_session_secret_invalid": (401, "Unauthorized"),
    "client_session_secret_used": (401, "Unauthorized"),
    "client_session_secret_expired": (401, "Unauthorized"),
    "sandbox_only": (403, "Forbidden"),
    "not_found": (404, "Not Found"),
    "not_implemented": (404, "Not implemented"),
    "method_not_allowed": (405, "Method Not Allowed"),
    "charge_in_progress": (409, "A charge is in progress."),
    "payload_too_large": (413, "Payload Too Large"),
    "service_unavailable": (503, "Service Unavailable"),
    "internal_error": (500, "Internal Server Error"),
}


class HttpProblem(Exception):
    """An error that exists only at the HTTP edge (version header, body size, unknown path…)."""

    def __init__(self, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Problem:
    code: str
    detail: str | None
    errors: dict[str, list[str]] | None = None
    headers: Mapping[str, str] | None = None


def from_exception(exc: Exception) -> Problem:
    if isinstance(exc, HttpProblem):
        return Problem(exc.code, exc.detail, headers=exc.headers)
    if isinstance(exc, ValidationFailed):
        return Problem(exc.code, exc.detail, errors=exc.errors)
    if isinstance(exc, Unavailable):
        return Problem(exc.code, exc.detail, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, DomainError) and exc.code in TABLE:
        headers = {"Retry-After": "1"} if exc.code == "charge_in_progress" else None
        return Problem(exc.code, exc.detail, headers=headers)
    return Problem("internal_error", None)


def render(problem: Problem, trace_id: str) -> Response:
    status, title = TABLE[problem.code]
    body: dict[str, Any] = {"type": TYPES[status], "title": title, "status": status}
    if problem.code != "internal_error" and problem.detail:
        body["detail"] = problem.detail
    body["traceId"] = trace_id
    body["code"] = problem.code
    if problem.errors is not None:
        body["errors"] = problem.errors
    headers = dict(problem.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Basic realm="cardkeep"')
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        headers=headers,
        media_type="application/problem+json",
    )
