"""The domain's error tree. Every error has a stable machine ``code``; HTTP statuses live elsewhere.

DomainError
├── ValidationFailed          code validation_error; ``errors`` maps field paths to messages
├── InvalidState              code invalid_state (also raised by illegal transitions)
│   └── IllegalTransition
├── NotFound                  code not_found
├── SetupIntentNotUsable      code setup_intent_not_usable
├── NotMerchantInitiated      code not_merchant_initiated
├── ChargeInProgress          code charge_in_progress
├── SandboxOnly               code sandbox_only
├── Unauthorized              code unauthorized, client_session_secret_{invalid,used,expired}
└── Unavailable               code service_unavailable (busy storage, unknown acquirer outcome)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class DomainError(Exception):
    """Base class: a stable ``code`` and a human ``detail`` that never contains card data."""

    code = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    code = "validation_error"

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {path: list(msgs) for path, msgs in errors.items()}
        first = next(iter(self.errors.values()), ["The request is not valid."])
        super().__init__(first[0])

    @classmethod
    def one(cls, path: str, message: str) -> ValidationFailed:
        return cls({path: [message]})


class InvalidState(DomainError):
    code = "invalid_state"


class IllegalTransition(InvalidState):
    """A transition the table does not allow; nothing was changed."""


class NotFound(DomainError):
    code = "not_found"


class SetupIntentNotUsable(DomainError):
    code = "setup_intent_not_usable"


class NotMerchantInitiated(DomainError):
    code = "not_merchant_initiated"


class ChargeInProgress(DomainError):
    code = "charge_in_progress"


class SandboxOnly(DomainError):
    code = "sandbox_only"


class Unauthorized(DomainError):
    code = "unauthorized"

    def __init__(self, detail: str, code: str = "unauthorized") -> None:
        super().__init__(detail)
        self.code = code


class Unavailable(DomainError):
    code = "service_unavailable"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
