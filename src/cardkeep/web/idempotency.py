"""The ``Idempotency-Key`` step of the request pipeline (CONTRACT §6), on both listeners.

It wraps the handler of every POST that carries the header: ``service.idempotency`` decides whether
the request runs, is answered from its stored answer (``Idempotent-Replayed: true``), or is refused
(422 for a key used with another request, 409 while the first one runs); after it runs, its final
answer is kept or the key forgotten. A handler whose use case commits a change passes it the
``recovery_point`` of its ``Call`` (``HeldKey.point``): the use case writes the rendered, sealed
answer onto the key in the transaction of the change, so a retry after a crash between that commit
and the step's own completion replays it instead of running the change again
(``service.idempotency``). What is stored is safe at rest: the request as a keyed
fingerprint (HMAC-SHA256 of the method, path and canonical JSON body, without any CV2), and the
answer sealed with AES-256-GCM bound to its scope and key, both keys derived from a secret kept
outside the database (``keyfiles``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cardkeep.domain.errors import IdempotencyInProgress, IdempotencyKeyMismatch, ValidationFailed
from cardkeep.logs import get_logger
from cardkeep.service.idempotency import Begin, Idempotency, RecoveryPoint
from cardkeep.service.ports import StoredResponse, UnitOfWork
from cardkeep.web.responses import JSON, json_body

HEADER = "idempotency-key"
MAX_KEY = 255
_CVV_NAMES = frozenset({"cv2", "cvv", "cvc"})

log = get_logger("cardkeep.idempotency")
T = TypeVar("T")


class Seal:
    """The keyed fingerprint of a request and the sealing of its stored answer."""

    def __init__(self, secret: bytes) -> None:
        def derive(purpose: bytes) -> bytes:
            return HKDF(hashes.SHA256(), 32, salt=None, info=purpose).derive(secret)

        self._mac_key = derive(b"cardkeep idempotency fingerprint v1")
        self._aead = AESGCM(derive(b"cardkeep idempotency seal v1"))

    def fingerprint(self, method: str, path: str, body: Any) -> str:
        canonical = msgspec.json.encode(_without_cvv(body), order="sorted")
        message = b"\0".join((method.encode(), path.encode(), canonical))
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def token(self, scope: str, key: str) -> str:
        """Names the key to the use cases (a charge remembers which request claimed it)."""
        message = b"\0".join((b"token", scope.encode(), key.encode()))
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()[:32]

    def seal(self, scope: str, key: str, body: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, body, _aad(scope, key))

    def open(self, scope: str, key: str, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], _aad(scope, key))


def _aad(scope: str, key: str) -> bytes:
    return b"\0".join((b"cardkeep-idempotency-v1", scope.encode(), key.encode()))


def _without_cvv(value: Any) -> Any:
    """The request as fingerprinted: every CV2 (any spelling, at any depth) left out."""
    if isinstance(value, dict):
        return {k: _without_cvv(v) for k, v in value.items() if str(k).lower() not in _CVV_NAMES}
    if isinstance(value, list):
        return [_without_cvv(v) for v in value]
    return value


@dataclass(frozen=True)
class KeyRule:
    """Where a route's idempotency key comes from and whose it is (CONTRACT §6): header names
    with their length limits, in order of precedence; whether a key is required; and the path
    parameter, if any, that narrows the key's scope below the account (refunds: the payment
    intent, as Dojo's spec says)."""

    headers: tuple[tuple[str, str, int], ...] = ((HEADER, "Idempotency-Key", MAX_KEY),)
    required: bool = False
    scope_param: str | None = None

    def read(self, headers: Mapping[str, str]) -> str | None:
        """The key from the first header present, or refused; None when there is none."""
        for name, shown, limit in self.headers:
            value = headers.get(name)
            if value is None:
                continue
            if not 1 <= len(value) <= limit or not all(" " <= ch <= "~" for ch in value):
                raise ValidationFailed.one(
                    shown, f"The {shown} header must be 1 to {limit} printable ASCII characters."
                )
            return value
        if self.required:
            shown = self.headers[0][1]
            raise ValidationFailed.one(
                shown, f"The {shown} header is required: a key of your own for this request."
            )
        return None


ANY_POST = KeyRule()
# Dojo's ``idempotencyKey`` (required, at most 100 characters) wins over ``Idempotency-Key``.
REFUNDS = KeyRule(
    (("idempotencykey", "idempotencyKey", 100), (HEADER, "Idempotency-Key", MAX_KEY)),
    required=True,
    scope_param="pi",
)


Run = Callable[[], Awaitable[Response]]


@dataclass(frozen=True)
class HeldKey:
    """The running key of the request being handled: what its recovery point completes."""

    seal: Seal
    scope: str
    key: str
    fingerprint: str

    def point(self, render: Callable[[T], Any]) -> RecoveryPoint[T]:
        """A recovery point that keeps ``render(result)`` as the request's 200 answer, sealed,
        exactly as the handler will send it (``json_body``)."""

        def keep(uow: UnitOfWork, result: T) -> None:
            sealed = self.seal.seal(self.scope, self.key, json_body(render(result)))
            stored = StoredResponse(200, JSON, sealed)
            Idempotency.keep(uow, self.scope, self.key, self.fingerprint, stored)

        return keep


class IdempotencyStep:
    """Wraps a POST handler (and its ProblemDetails) with Idempotency-Key."""

    def __init__(self, idempotency: Idempotency, seal: Seal) -> None:
        self._idempotency = idempotency
        self._seal = seal

    async def __call__(self, call: Any, run: Run) -> Response:
        if call.request.method != "POST":
            return await run()
        rule: KeyRule = call.key_rule
        key = rule.read(call.request.headers)
        if key is None:
            return await run()
        scope = call.scope_for_idempotency()
        if rule.scope_param is not None:
            scope = f"{scope}:{call.param(rule.scope_param)}"
        fingerprint = self._seal.fingerprint(call.request.method, call.request.url.path, call.body)
        call.idempotency_token = self._seal.token(scope, key)
        started = await run_in_threadpool(self._idempotency.begin, scope, key, fingerprint)
        if started.outcome is Begin.REPLAY:
            assert started.response is not None
            stored = started.response
            return Response(
                self._seal.open(scope, key, stored.body),
                status_code=stored.status,
                media_type=stored.media_type,
                headers={"Idempotent-Replayed": "true"},
            )
        if started.outcome is Begin.MISMATCH:
            raise IdempotencyKeyMismatch(
                "This Idempotency-Key was used with a different request; use a new key."
            )
        if started.outcome is Begin.IN_PROGRESS:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still running; retry shortly."
            )
        call.held_key = HeldKey(self._seal, scope, key, fingerprint)
        response = await run()
        stored = StoredResponse(
            response.status_code,
            response.media_type or "application/json",
            self._seal.seal(scope, key, bytes(response.body)),
        )
        try:
            await run_in_threadpool(self._idempotency.finish, scope, key, fingerprint, stored)
        except Exception as exc:  # the answer stands; the key's lease runs out by itself
            log.warning("idempotency_not_stored", error_type=type(exc).__name__)
        return response
