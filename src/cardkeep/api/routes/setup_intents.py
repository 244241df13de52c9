"""Setup-intent routes of the API listener (no card data here)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.api.routes.params import flag
from cardkeep.domain.account import Account
from cardkeep.domain.errors import ClientSecretInvalid
from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.pipeline import Call, Edge


def routes(edge: Edge, services: Services) -> list[Route]:
    sis = services.setup_intents
    schemes = services.card_schemes

    async def create(call: Call) -> Response:
        cmd = requests.setup_intent_command(call.body)
        si, secret = await call.run(sis.create, call.account, cmd)
        return call.ok(responses.setup_intent_json(si, schemes, secret=secret))

    async def get(call: Call) -> Response:
        si = await call.run(sis.get, call.account, call.param("si"))
        return call.ok(responses.setup_intent_json(si, schemes))

    async def delete(call: Call) -> Response:
        include = flag(call.query("includeAuthorized"), "includeAuthorized")
        si = await call.run(sis.delete, call.account, call.param("si"), include)
        return call.ok(responses.setup_intent_json(si, schemes))

    async def refresh(call: Call) -> Response:
        si, secret = await call.run(sis.refresh_secret, call.account, call.param("si"))
        return call.ok(responses.setup_intent_json(si, schemes, secret=secret))

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
        si, fresh = await call.run(sis.refresh_public_secret, call.param("si"), secret)
        return call.ok(responses.setup_intent_json(si, schemes, secret=fresh, public=True))

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
