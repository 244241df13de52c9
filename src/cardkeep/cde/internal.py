"""create_internal_app: the PCI process's internal listener (CONTRACT §1 and §11), the API workers'
only way to a card. It charges or re-sends a charge of a card on file by its vault token, and
refunds, reverses or re-sends a refund of a captured charge by the capture's acquirer key, through
the PCI process's own Charger (``charger.VaultCharger``), and answers the outcome (``hop.wire``).

Only a request carrying ``Authorization: Bearer <internal secret>`` (compared in constant time, on
digests so not even the length leaks) to one of those four POST paths reaches a handler; anything
else gets a bare 404 that tells nothing. A body that does not decode is a 400 (the caller is the
API worker, so that is a bug to see in the log). A call that raises answers 502: the API side takes
it, like any failure of the hop, for an unknown outcome. Nothing here logs a body.

It binds a loopback address by default (``--internal-port``, 127.0.0.1:8002) and is never the
public PCI listener.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from cardkeep.hop import wire
from cardkeep.logs import get_logger
from cardkeep.service.ports import Charger

log = get_logger("cardkeep.internal")

Handler = Callable[[bytes], bytes]
_NOT_FOUND = b'{"status":404,"title":"Not Found"}'
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def _handlers(charger: Charger) -> dict[str, Handler]:
    return {
        wire.CHARGE: lambda b: wire.encode_charge_outcome(charger.charge(wire.decode_charge(b))),
        wire.CHARGE_STATUS: lambda b: wire.encode_charge_outcome(
            charger.status(wire.decode_charge(b))
        ),
        wire.REFUND: lambda b: wire.encode_refund_outcome(charger.refund(wire.decode_refund(b))),
        wire.REFUND_STATUS: lambda b: wire.encode_refund_outcome(
            charger.refund_status(wire.decode_refund(b))
        ),
    }


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _problem(detail: str) -> bytes:
    return msgspec.json.encode({"status": 400, "title": "Bad Request", "detail": detail})


def create_internal_app(charger: Charger, secret: str) -> ASGIApp:
    """The internal listener's app over ``charger``, opened only by ``secret``."""
    expected = hashlib.sha256(f"Bearer {secret}".encode()).digest()
    handlers = _handlers(charger)

    def authorized(scope: Scope) -> bool:
        given = [v for k, v in scope["headers"] if k == b"authorization"]
        presented = given[0] if len(given) == 1 else b""
        return hmac.compare_digest(hashlib.sha256(presented).digest(), expected)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        handler = handlers.get(scope["path"]) if scope["method"] == "POST" else None
        if not authorized(scope):
            if handler is not None:  # a caller that knows the paths but not the secret
                log.warning("internal_refused", path=scope["path"], client=_client(scope))
            await _answer(send, 404, _NOT_FOUND)
            return
        if handler is None:
            await _answer(send, 404, _NOT_FOUND)
            return
        body = await _body(receive, wire.MAX_BODY)
        if body is None:
            await _answer(send, 400, _problem(f"the body is over {wire.MAX_BODY} bytes"))
            return
        try:
            answer = await run_in_threadpool(handler, body)
        except wire.WireError as exc:
            log.error("internal_bad_request", path=scope["path"], reason=str(exc))
            await _answer(send, 400, _problem(str(exc)))
            return
        except Exception as exc:  # the acquirer call raised: unknown, the caller asks again
            log.error("internal_call_failed", path=scope["path"], error_type=type(exc).__name__)
            await _answer(send, 502, b'{"status":502,"title":"Bad Gateway"}')
            return
        await _answer(send, 200, answer)

    return app


def _client(scope: Scope) -> Any:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
