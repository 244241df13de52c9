"""THE table from exception class to (HTTP status, Code), and the errors that exist only at the
HTTP edge.

The only module that knows HTTP statuses. Each exception class has exactly one row; a class may
share its code with another at a different status. An exception is looked up by its class, then
its base classes; anything unknown is a 500 ``internal_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cardkeep.domain.errors import (
    AmountExceedsRefundable,
    Busy,
    CardDataNotAccepted,
    ChargeInProgress,
    ClientSecretExpired,
    ClientSecretInvalid,
    ClientSecretUsed,
    Code,
    Conflict,
    DomainError,
    IdempotencyInProgress,
    IdempotencyKeyMismatch,
    IllegalTransition,
    InvalidState,
    NotFound,
    NotMerchantInitiated,
    NotReversible,
    RateLimited,
    RefundDeclined,
    RefundInProgress,
    RowLocked,
    SandboxOnly,
    SetupIntentNotUsable,
    Unauthorized,
    Unavailable,
    UrlNotAllowed,
    ValidationFailed,
)


class HttpError(Exception):
    """An error that exists only at the HTTP edge (version header, body size, routing)."""

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class InvalidVersion(HttpError):
    pass


class PayloadTooLarge(HttpError):
    pass


class UriTooLong(HttpError):
    """A request line longer than the server reads (answered by ``http_server``, not an app)."""


class HeaderFieldsTooLarge(HttpError):
    """Request headers too many or too large (answered by ``http_server``, not an app)."""


class NoSuchEndpoint(HttpError):
    pass


class NotImplementedYet(HttpError):
    pass


class MethodNotAllowed(HttpError):
    pass


C = Code
TABLE: dict[type[Exception], tuple[int, Code]] = {
    ValidationFailed: (400, C.VALIDATION_ERROR),
    InvalidVersion: (400, C.INVALID_VERSION),
    CardDataNotAccepted: (400, C.CARD_DATA_NOT_ACCEPTED),
    InvalidState: (400, C.INVALID_STATE),
    IllegalTransition: (400, C.INVALID_STATE),
    SetupIntentNotUsable: (400, C.SETUP_INTENT_NOT_USABLE),
    NotMerchantInitiated: (400, C.NOT_MERCHANT_INITIATED),
    AmountExceedsRefundable: (400, C.AMOUNT_EXCEEDS_REFUNDABLE),
    RefundDeclined: (400, C.REFUND_DECLINED),
    NotReversible: (409, C.INVALID_STATE),
    Unauthorized: (401, C.UNAUTHORIZED),
    ClientSecretInvalid: (401, C.CLIENT_SESSION_SECRET_INVALID),
    ClientSecretUsed: (401, C.CLIENT_SESSION_SECRET_USED),
    ClientSecretExpired: (401, C.CLIENT_SESSION_SECRET_EXPIRED),
    UrlNotAllowed: (400, C.URL_NOT_ALLOWED),
    SandboxOnly: (403, C.SANDBOX_ONLY),
    NotFound: (404, C.NOT_FOUND),
    NoSuchEndpoint: (404, C.NOT_FOUND),
    NotImplementedYet: (404, C.NOT_IMPLEMENTED),
    MethodNotAllowed: (405, C.METHOD_NOT_ALLOWED),
    ChargeInProgress: (409, C.CHARGE_IN_PROGRESS),
    RefundInProgress: (409, C.REFUND_IN_PROGRESS),
    Conflict: (409, C.CONFLICT),
    IdempotencyInProgress: (409, C.IDEMPOTENCY_IN_PROGRESS),
    IdempotencyKeyMismatch: (422, C.IDEMPOTENCY_KEY_MISMATCH),
    PayloadTooLarge: (413, C.PAYLOAD_TOO_LARGE),
    UriTooLong: (414, C.URI_TOO_LONG),
    HeaderFieldsTooLarge: (431, C.HEADERS_TOO_LARGE),
    Unavailable: (503, C.SERVICE_UNAVAILABLE),
    RateLimited: (429, C.RATE_LIMITED),
    Busy: (503, C.SERVICE_UNAVAILABLE),
    RowLocked: (503, C.SERVICE_UNAVAILABLE),
    Exception: (500, C.INTERNAL_ERROR),
}

TITLES: dict[Code, str] = {
    C.VALIDATION_ERROR: "One or more validation errors occurred.",
    C.INVALID_VERSION: "The version header is missing or not valid.",
    C.CARD_DATA_NOT_ACCEPTED: "Card data goes to the PCI listener.",
    C.INVALID_STATE: "The operation is not allowed in the object's current status.",
    C.SETUP_INTENT_NOT_USABLE: "The setup intent cannot be used for this payment.",
    C.NOT_MERCHANT_INITIATED: "The payment intent is not merchant-initiated.",
    C.UNAUTHORIZED: "Unauthorized",
    C.CLIENT_SESSION_SECRET_INVALID: "Unauthorized",
    C.CLIENT_SESSION_SECRET_USED: "Unauthorized",
    C.CLIENT_SESSION_SECRET_EXPIRED: "Unauthorized",
    C.SANDBOX_ONLY: "Forbidden",
    C.NOT_FOUND: "Not Found",
    C.NOT_IMPLEMENTED: "Not implemented",
    C.METHOD_NOT_ALLOWED: "Method Not Allowed",
    C.CHARGE_IN_PROGRESS: "A charge is in progress.",
    C.REFUND_IN_PROGRESS: "A refund is in progress.",
    C.AMOUNT_EXCEEDS_REFUNDABLE: "The amount exceeds what can be refunded.",
    C.REFUND_DECLINED: "The refund was declined.",
    C.CONFLICT: "Conflict",
    C.URL_NOT_ALLOWED: "The webhook URL is not allowed.",
    C.IDEMPOTENCY_IN_PROGRESS: "A request with this Idempotency-Key is in progress.",
    C.IDEMPOTENCY_KEY_MISMATCH: "The Idempotency-Key was used with a different request.",
    C.PAYLOAD_TOO_LARGE: "Payload Too Large",
    C.URI_TOO_LONG: "URI Too Long",
    C.HEADERS_TOO_LARGE: "Request Header Fields Too Large",
    C.SERVICE_UNAVAILABLE: "Service Unavailable",
    C.RATE_LIMITED: "Too Many Requests",
    C.INTERNAL_ERROR: "Internal Server Error",
}


@dataclass(frozen=True)
class Problem:
    status: int
    code: Code
    detail: str | None
    errors: dict[str, list[str]] | None = None
    headers: Mapping[str, str] | None = None


def row_of(exc: BaseException) -> tuple[int, Code]:
    for cls in type(exc).__mro__:
        row = TABLE.get(cls)
        if row is not None:
            return row
    return TABLE[Exception]


def from_exception(exc: Exception) -> Problem:
    status, code = row_of(exc)
    if code is C.INTERNAL_ERROR:
        return Problem(status, code, None)
    if isinstance(exc, HttpError):
        return Problem(status, code, exc.detail, headers=exc.headers)
    assert isinstance(exc, DomainError)
    headers: dict[str, str] = {}
    if isinstance(exc, Unavailable | ChargeInProgress | RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, IdempotencyInProgress):
        headers["Retry-After"] = "1"
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    return Problem(status, code, exc.detail, errors=errors, headers=headers)
