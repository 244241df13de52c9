"""Setup-intent routes of the API listener (no card data here)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.api.routes.params import flag
from cardkeep.domain.account import Account
from cardkeep.domain.errors import ClientSecretInvalid
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.pipeline import Call, Edge


def routes(edge: Edge, services: Services) -> list[Route]:
    sis = services.setup_intents
    schemes = services.card_schemes

    def with_secret(made: tuple[SetupIntent, str]) -> dict[str, Any]:
        return responses.setup_intent_json(made[0], schemes, secret=made[1])

    def public_with_secret(made: tuple[SetupIntent, str]) -> dict[str, Any]:
        return responses.setup_intent_json(made[0], schemes, secret=made[1], public=True)

    # Each use case that commits a change gets the request's recovery point (Idempotency-Key).
    async def create(call: Call) -> Response:
        cmd = requests.setup_intent_command(call.body)
        point = call.recovery_point(with_secret)
        return call.ok(with_secret(await call.run(sis.create, call.account, cmd, point)))

    async def get(call: Call) -> Response:
        si = await call.run(sis.get, call.account, call.param("si"))
        return call.ok(responses.setup_intent_json(si, schemes))

    async def delete(call: Call) -> Response:
        include = flag(call.query("includeAuthorized"), "includeAuthorized")
        si = await call.run(sis.delete, call.account, call.param("si"), include)
        return call.ok(responses.setup_intent_json(si, schemes))

    async def refresh(call: Call) -> Response:
        point = call.recovery_point(with_secret)
        made = await call.run(sis.refresh_secret, call.account, call.param("si"), point)
        return call.ok(with_secret(made))

    async def _public_caller(call: Call) -> tuple[str, Account | None]:
        if call.credential is None:
            raise ClientSecretInvalid(
                "Send the client session secret as Authorization: Basic <secret>."
            )
        if call.credential.startswith("sk_"):
            return call.credential, await call.run(services.accounts.authenticate, call.credential)
        return call.credential, None

    async def get_public(call: Call) -> Response:
        secret, account = await _public_caller(call)
        si = await call.run(sis.authenticate_public, call.param("si"), secret, account)
        return call.ok(responses.setup_intent_json(si, schemes, public=True))

    async def refresh_public(call: Call) -> Response:
        secret, _ = await _public_caller(call)
        point = call.recovery_point(public_with_secret)
        made = await call.run(sis.refresh_public_secret, call.param("si"), secret, point)
        return call.ok(public_with_secret(made))

    return [
        edge.route("/setup-intents", {"POST": create}),
        edge.route("/setup-intents/public/{si}", {"GET": get_public}, auth="raw"),
        edge.route(
            "/setup-intents/public/{si}/refresh-client-session-secret",
            {"POST": refresh_public},
            auth="raw",
        ),
        edge.route("/setup-intents/{si}", {"GET": get, "DELETE": delete}),
        edge.route("/setup-intents/{si}/refresh-client-session-secret", {"POST": refresh}),
    ]
