"""The error vocabulary: one ``Code`` enum and the domain's exception tree.

Each exception class maps to exactly one (HTTP status, ``Code``) in ``web.errors.TABLE``, the only
place that knows statuses; two classes may share a code at different statuses. A ``detail`` never
contains card data.

DomainError
├── ValidationFailed          validation_error; ``errors`` maps field paths to messages
├── CardDataNotAccepted       card_data_not_accepted
├── InvalidState              invalid_state
│   ├── IllegalTransition     a transition the table does not allow
│   └── NotReversible         invalid_state at 409 (a reversal that cannot be made)
├── NotFound                  not_found
├── SetupIntentNotUsable      setup_intent_not_usable
├── NotMerchantInitiated      not_merchant_initiated
├── ChargeInProgress          charge_in_progress
│   └── RefundInProgress      refund_in_progress
├── AmountExceedsRefundable   amount_exceeds_refundable
├── RefundDeclined            refund_declined
├── IdempotencyInProgress     idempotency_in_progress
├── IdempotencyKeyMismatch    idempotency_key_mismatch
├── Conflict                  conflict (a write collided with a stored record)
├── UrlNotAllowed             url_not_allowed (a webhook URL the destination rules refuse)
├── SandboxOnly               sandbox_only
├── Unauthorized              unauthorized
│   ├── ClientSecretInvalid   client_session_secret_invalid
│   ├── ClientSecretUsed      client_session_secret_used
│   └── ClientSecretExpired   client_session_secret_expired
└── Unavailable               service_unavailable (busy storage, unknown acquirer outcome)
    ├── Busy                  contention the use case may retry
    └── RowLocked             a row another transaction is claiming
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum


class Code(StrEnum):
    """Every machine code a problem body can carry (CONTRACT §3)."""

    VALIDATION_ERROR = "validation_error"
    INVALID_VERSION = "invalid_version"
    CARD_DATA_NOT_ACCEPTED = "card_data_not_accepted"
    INVALID_STATE = "invalid_state"
    SETUP_INTENT_NOT_USABLE = "setup_intent_not_usable"
    NOT_MERCHANT_INITIATED = "not_merchant_initiated"
    UNAUTHORIZED = "unauthorized"
    CLIENT_SESSION_SECRET_INVALID = "client_session_secret_invalid"  # noqa: S105 - a code
    CLIENT_SESSION_SECRET_USED = "client_session_secret_used"  # noqa: S105 - a code
    CLIENT_SESSION_SECRET_EXPIRED = "client_session_secret_expired"  # noqa: S105 - a code
    SANDBOX_ONLY = "sandbox_only"
    NOT_FOUND = "not_found"
    NOT_IMPLEMENTED = "not_implemented"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    AMOUNT_EXCEEDS_REFUNDABLE = "amount_exceeds_refundable"
    REFUND_DECLINED = "refund_declined"
    CHARGE_IN_PROGRESS = "charge_in_progress"
    REFUND_IN_PROGRESS = "refund_in_progress"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
    CONFLICT = "conflict"
    URL_NOT_ALLOWED = "url_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    URI_TOO_LONG = "uri_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    SERVICE_UNAVAILABLE = "service_unavailable"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


class DomainError(Exception):
    """Base class: a human ``detail`` that never contains card data."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {path: list(msgs) for path, msgs in errors.items()}
        first = next(iter(self.errors.values()), ["The request is not valid."])
        super().__init__(first[0])

    @classmethod
    def one(cls, path: str, message: str) -> ValidationFailed:
        return cls({path: [message]})


class CardDataNotAccepted(DomainError):
    """Card data where none may be: card fields on the API listener, a PAN in free text."""


class InvalidState(DomainError):
    pass


class IllegalTransition(InvalidState):
    """A transition the table does not allow; nothing was changed."""


class NotFound(DomainError):
    pass


class SetupIntentNotUsable(DomainError):
    pass


class NotMerchantInitiated(DomainError):
    pass


class ChargeInProgress(DomainError):
    """A charge is in flight; ``retry_after`` says when its outcome should be known."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RefundInProgress(ChargeInProgress):
    """A refund or reversal of this payment intent is in flight with an unknown outcome (or a
    reversal is in flight); ``retry_after`` says when recovery asks again."""


class AmountExceedsRefundable(DomainError):
    """A refund larger than what is captured and not yet refunded or reserved."""


class RefundDeclined(DomainError):
    """The acquirer declined a refund or reversal: nothing moved."""


class NotReversible(InvalidState):
    """A reversal of a payment intent that cannot be reversed (409, Dojo's code there)."""


class IdempotencyInProgress(DomainError):
    """The first request with this Idempotency-Key is still running."""


class IdempotencyKeyMismatch(DomainError):
    """This Idempotency-Key was used with a different request."""


class Conflict(DomainError):
    """A write collided with a record already stored (a duplicate id, a dangling reference)."""


class UrlNotAllowed(DomainError):
    """A webhook URL that the destination rules refuse (CONTRACT §8.1)."""


class SandboxOnly(DomainError):
    pass


class Unauthorized(DomainError):
    pass


class ClientSecretInvalid(Unauthorized):
    pass


class ClientSecretUsed(Unauthorized):
    pass


class ClientSecretExpired(Unauthorized):
    pass


class RateLimited(DomainError):
    """Too many card attempts in the card-testing window; ``retry_after`` (seconds) says when the
    next attempt would be counted again."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(DomainError):
    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RowLocked(Unavailable):
    """Another transaction holds the row this one would wait for (it is claiming it): the caller
    answers at once instead of waiting (a concurrent charge is in progress)."""


class Busy(Unavailable):
    """The database refused a transaction for contention (serialization failure, deadlock, lock
    timeout): the use case retries it a bounded number of times before answering 503."""
