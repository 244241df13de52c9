"""The request pipeline of both listeners: an explicit, ordered list of steps before each thin
handler, and one place where any failure becomes ProblemDetails.

A route's steps, in order: path ids (longer than any id → 404), release (the ``version`` header),
credentials (``Authorization: Basic``), authentication (the secret key → account), body (64 KiB,
JSON), card guards (API listener: card fields refused; both listeners: a card number in any other
field refused). Each step reads the request and fills in the ``Call``; a step that refuses raises.
A new concern (``Idempotency-Key``) is one more step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardkeep.domain.account import Account
from cardkeep.domain.errors import CardDataNotAccepted, NotFound, Unauthorized
from cardkeep.domain.ids import MAX_PATH_ID_LENGTH
from cardkeep.service.idempotency import RecoveryPoint
from cardkeep.web.body import decode_json, read_body
from cardkeep.web.card_guard import contains_card_fields, pan_field
from cardkeep.web.credentials import basic_credential, missing_credential_detail
from cardkeep.web.idempotency import ANY_POST, HeldKey, KeyRule
from cardkeep.web.problems import problem_for
from cardkeep.web.release import resolve_release
from cardkeep.web.responses import json_response
from cardkeep.web.trace import trace_id_of

AuthMode = Literal["key", "raw"]
T = TypeVar("T")


@dataclass
class Call:
    """What a handler receives: the request and what the steps found in it."""

    request: Request
    trace_id: str
    release: str | None = None
    credential: str | None = None
    account: Account | None = None
    body: Any = None
    raw_body: bytes = b""
    # Set by the Idempotency-Key step: names the request's key to the use cases, and holds it.
    idempotency_token: str | None = None
    held_key: HeldKey | None = None
    key_rule: KeyRule = ANY_POST  # where this route's idempotency key comes from

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking service code (storage, acquirer) off the event loop."""
        return await run_in_threadpool(fn, *args)

    def recovery_point(self, render: Callable[[T], Any]) -> RecoveryPoint[T] | None:
        """For a use case that commits a change: writes this request's answer (``render`` of
        what the use case made) onto its Idempotency-Key in the same transaction; None without
        a key. The handler answers ``ok(render(result))``, the same bytes."""
        return None if self.held_key is None else self.held_key.point(render)

    def ok(self, data: Any) -> Response:
        return json_response(data, release=self.release)

    def no_content(self) -> Response:
        return Response(status_code=204)

    def scope_for_idempotency(self) -> str:
        """Whose Idempotency-Keys these are: the account, or (client session secret routes) a
        hash of the credential."""
        if self.account is not None:
            return self.account.id
        digest = hashlib.sha256((self.credential or "").encode("utf-8")).hexdigest()
        return f"public:{digest[:32]}"


Handler = Callable[[Call], Awaitable[Response]]
Around = Callable[[Call, Callable[[], Awaitable[Response]]], Awaitable[Response]]


class Step(Protocol):
    async def __call__(self, call: Call) -> None: ...


# -- the steps ----------------------------------------------------------------------------------


async def check_path_ids(call: Call) -> None:
    for value in call.request.path_params.values():
        if isinstance(value, str) and len(value) > MAX_PATH_ID_LENGTH:
            raise NotFound("No object with that id.")


async def resolve_version(call: Call) -> None:
    call.release = resolve_release(call.request.headers.get("version"))


async def read_credentials(call: Call) -> None:
    call.credential = basic_credential(call.request.headers.get("authorization"))


@dataclass(frozen=True)
class Authenticate:
    """The secret key decides the account; without one the request is 401."""

    authenticate: Callable[[str], Account]

    async def __call__(self, call: Call) -> None:
        if call.credential is None:
            header = call.request.headers.get("authorization")
            raise Unauthorized(missing_credential_detail(header))
        call.account = await run_in_threadpool(self.authenticate, call.credential)


async def read_json_body(call: Call) -> None:
    call.raw_body = await read_body(call.request)
    call.body = decode_json(call.raw_body)


async def refuse_card_fields(call: Call) -> None:
    if contains_card_fields(call.body):
        raise CardDataNotAccepted("Card data goes to the PCI listener, never to the API listener.")


async def refuse_pans_in_text(call: Call) -> None:
    field = pan_field(call.body)
    if field is not None:
        raise CardDataNotAccepted(
            f"The field {field} holds what looks like a card number. A card number goes only in "
            "cardDetails.cardNumber, on the PCI listener; cardkeep never stores one anywhere else."
        )


# -- routes -------------------------------------------------------------------------------------


class Edge:
    """Builds the routes of one listener, each running its steps, then its handler."""

    def __init__(
        self,
        authenticate: Callable[[str], Account],
        *,
        rejects_card_data: bool,
        around: Around | None = None,
    ) -> None:
        self._authenticate = Authenticate(authenticate)
        self._rejects_card_data = rejects_card_data
        self._around = around

    def steps(self, *, auth: AuthMode, version: bool) -> list[Step]:
        steps: list[Step] = [check_path_ids]
        if version:
            steps.append(resolve_version)
        steps.append(read_credentials)
        if auth == "key":
            steps.append(self._authenticate)
        steps.append(read_json_body)
        if self._rejects_card_data:
            steps.append(refuse_card_fields)
        steps.append(refuse_pans_in_text)
        return steps

    def route(
        self,
        path: str,
        handlers: dict[str, Handler],
        *,
        auth: AuthMode = "key",
        version: bool = True,
        keys: KeyRule = ANY_POST,
    ) -> Route:
        """One route per path, dispatching by method, so a 405's Allow header lists them all."""
        steps = self.steps(auth=auth, version=version)
        endpoint = pipeline(steps, handlers, self._around, keys)
        return Route(path, endpoint, methods=list(handlers))


def pipeline(
    steps: Sequence[Step],
    handlers: dict[str, Handler],
    around: Around | None = None,
    keys: KeyRule = ANY_POST,
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint: the steps in order, then the handler — wrapped by ``around`` (the
    Idempotency-Key step), which sees the final answer, ProblemDetails included."""

    async def endpoint(request: Request) -> Response:
        call = Call(request, trace_id_of(request), key_rule=keys)

        async def handle() -> Response:
            try:
                # Starlette adds HEAD wherever GET is served.
                handler = handlers.get(request.method) or handlers["GET"]
                return await handler(call)
            except Exception as exc:
                return problem_for(exc, call.trace_id, request)

        try:
            for step in steps:
                await step(call)
            response = await (around(call, handle) if around is not None else handle())
        except Exception as exc:
            response = problem_for(exc, call.trace_id, request)
        if call.release is not None:
            response.headers["version"] = call.release
        return response

    return endpoint
