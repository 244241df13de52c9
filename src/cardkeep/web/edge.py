"""The request pipeline shared by both listeners.

``Guard`` (outermost ASGI middleware): trace id in and out, one redacted access-log line per
request (path without query string), and a last-resort 500 ProblemDetails that never carries a
stack trace. ``Edge.route`` wraps each thin handler: version header, body size and JSON, the
card-data check of the API listener, key authentication, path-id length, and the translation of
every exception into ProblemDetails through ``errors.TABLE``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardkeep.domain.account import Account
from cardkeep.domain.errors import NotFound, ValidationFailed
from cardkeep.domain.ids import MAX_PATH_ID_LENGTH
from cardkeep.web import errors
from cardkeep.web.errors import HttpProblem
from cardkeep.web.logs import get_logger

RELEASES = ("2022-04-07", "2024-02-05", "2025-09-10")
MAX_BODY = 64 * 1024
CARD_FIELDS = frozenset({"carddetails", "cardnumber", "cv2", "cvv"})
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

log = get_logger("cardkeep.http")

AuthMode = Literal["key", "none", "raw"]


def resolve_release(value: str | None) -> str:
    """The newest supported release on or before the date in the ``version`` header."""
    if value is None:
        raise HttpProblem("invalid_version", "The version header is required (e.g. 2025-09-10).")
    head = value[:10]
    try:
        asked = date.fromisoformat(head).isoformat() if _DATE.match(head) else None
    except ValueError:  # shaped like a date but not one (2025-02-30)
        asked = None
    if asked is None:
        raise HttpProblem(
            "invalid_version", "The version header must start with a date yyyy-mm-dd."
        )
    eligible = [r for r in RELEASES if r <= asked]
    if not eligible:
        raise HttpProblem("invalid_version", f"The oldest supported version is {RELEASES[0]}.")
    return eligible[-1]


def basic_credential(header: str | None) -> str | None:
    """The credential of ``Basic <raw>`` (Dojo's form) or ``Basic base64(<raw>:)`` (RFC 7617)."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "basic" or not value:
        return None
    if value.startswith("sk_"):
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return value
    user, sep, _ = decoded.partition(":")
    return user if sep and user else value


def missing_credential_detail(header: str | None) -> str:
    """Why no credential was found: absent, or sent under another scheme than Basic."""
    scheme = (header or "").strip().partition(" ")[0]
    if scheme and scheme.lower() != "basic":
        return (
            "The Authorization header must use the Basic scheme: Authorization: Basic <secret key>."
        )
    return "The secret key is missing."


def _contains_card_data(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            str(k).lower() in CARD_FIELDS or _contains_card_data(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_contains_card_data(v) for v in value)
    return False


def new_trace_id() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("trace_id") or new_trace_id())


def json_response(data: Any, *, release: str | None = None, status: int = 200) -> Response:
    headers = {"version": release} if release else None
    return Response(
        msgspec.json.encode(data),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


@dataclass
class Call:
    """What a handler receives: the request, its decoded body, the release and the account."""

    request: Request
    trace_id: str
    release: str | None
    body: Any
    account: Account | None
    credential: str | None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking service code (storage, acquirer) off the event loop."""
        return await run_in_threadpool(fn, *args)

    def ok(self, data: Any) -> Response:
        return json_response(data, release=self.release)


Handler = Callable[[Call], Awaitable[Response]]


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise HttpProblem("payload_too_large", f"The request body is larger than {MAX_BODY} bytes.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpProblem(
                "payload_too_large", f"The request body is larger than {MAX_BODY} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


MAX_DEPTH = 32


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise ValidationFailed.one("$", "The request body is not valid JSON.") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise ValidationFailed.one("$", f"The request body nests deeper than {MAX_DEPTH} levels.")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative, so a hostile body cannot exhaust the stack of whoever walks it next."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


class Edge:
    """Builds routes for one listener."""

    def __init__(self, authenticate: Callable[[str], Account], *, rejects_card_data: bool) -> None:
        self._authenticate = authenticate
        self._rejects_card_data = rejects_card_data

    def route(
        self,
        path: str,
        handlers: dict[str, Handler],
        *,
        auth: AuthMode = "key",
        version: bool = True,
    ) -> Route:
        """One route per path, dispatching by method, so a 405's Allow header lists them all."""

        async def endpoint(request: Request) -> Response:
            trace = trace_id_of(request)
            release: str | None = None
            try:
                for value in request.path_params.values():
                    if isinstance(value, str) and len(value) > MAX_PATH_ID_LENGTH:
                        raise NotFound("No object with that id.")
                release = resolve_release(request.headers.get("version")) if version else None
                header = request.headers.get("authorization")
                credential = basic_credential(header)
                account = None
                if auth == "key":
                    if credential is None:
                        raise HttpProblem("unauthorized", missing_credential_detail(header))
                    account = await run_in_threadpool(self._authenticate, credential)
                body = decode_json(await read_body(request))
                if self._rejects_card_data and _contains_card_data(body):
                    raise HttpProblem(
                        "card_data_not_accepted",
                        "Card data goes to the PCI listener, never to the API listener.",
                    )
                call = Call(request, trace, release, body, account, credential)
                # Starlette adds HEAD wherever GET is served.
                handler = handlers.get(request.method) or handlers["GET"]
                return await handler(call)
            except Exception as exc:
                response = problem_for(exc, trace, request)
                if release is not None:
                    response.headers["version"] = release
                return response

        return Route(path, endpoint, methods=list(handlers))


def problem_for(exc: Exception, trace: str, request: Request) -> Response:
    problem = errors.from_exception(exc)
    if problem.code == "internal_error":
        log.error(
            "unhandled_error",
            traceId=trace,
            path=request.url.path,
            error_type=type(exc).__name__,
            exc_info=exc,
        )
    return errors.render(problem, trace)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) as ProblemDetails."""
    assert isinstance(exc, HTTPException)
    trace = trace_id_of(request)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        problem = HttpProblem(
            "method_not_allowed",
            f"The method {request.method} is not allowed here.",
            {"Allow": allow},
        )
    else:
        problem = HttpProblem("not_found", "No such endpoint.")
    return problem_for(problem, trace, request)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Starlette's last resort (ServerErrorMiddleware) renders through the same table."""
    return problem_for(exc, trace_id_of(request), request)


def not_implemented(feature: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return problem_for(
            HttpProblem("not_implemented", f"{feature} is not served by cardkeep yet."),
            trace_id_of(request),
            request,
        )

    return endpoint


class Guard:
    """Outermost middleware: trace ids, the access log, and a last-resort 500."""

    def __init__(self, app: ASGIApp, listener: str) -> None:
        self.app = app
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), ""
        )
        trace = incoming if _TRACEPARENT.match(incoming) else new_trace_id()
        scope.setdefault("state", {})["trace_id"] = trace
        started = time.perf_counter()
        status = 0

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"traceparent", trace.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception as exc:
            log.error("unhandled_error", traceId=trace, error_type=type(exc).__name__, exc_info=exc)
            if status == 0:
                response = errors.render(errors.Problem("internal_error", None), trace)
                await response(scope, receive, send_with_trace)
        finally:
            log.info(
                "request",
                listener=self.listener,
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
                traceId=trace,
            )
