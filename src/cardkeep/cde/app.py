"""create_pci_app: the PCI listener (Dojo's pci-api.dojo.tech), the cardholder-data environment.

Serves the card-carrying setup-intent create, the hosted card page and its assets (``page``), the
page's card endpoint (a card for a setup intent created on the API listener, authorized by its
client session secret) and health. Any other path is 404.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cardkeep.cde.card_request import read_card
from cardkeep.cde.intake import CardIntake
from cardkeep.cde.page import page_routes
from cardkeep.domain.errors import ClientSecretInvalid, ValidationFailed
from cardkeep.domain.setup_intent import SetupIntent
from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.body import repeated_keys
from cardkeep.web.common import assemble, health_route
from cardkeep.web.fields import Errors, add
from cardkeep.web.idempotency import IdempotencyStep, Seal
from cardkeep.web.pipeline import Call, Edge
from cardkeep.web.problems import not_implemented


def create_pci_app(services: Services, intake: CardIntake, seal: Seal) -> ASGIApp:
    idempotency = IdempotencyStep(services.idempotency, seal)
    edge = Edge(services.accounts.authenticate, rejects_card_data=False, around=idempotency)
    schemes = services.card_schemes
    accepted = frozenset(schemes)

    def render(si: SetupIntent) -> dict[str, Any]:
        return responses.setup_intent_json(si, schemes)

    async def create(call: Call) -> Response:
        assert call.account is not None
        errors: Errors = {}
        for path in repeated_keys(call.raw_body, "cardDetails"):
            add(errors, path, f"The {path} field appears more than once.")
        now = services.ctx.now(call.account)
        card = read_card(call.body, errors, accepted, now)
        cmd = requests.setup_intent_command(call.body, errors)  # raises with card errors too
        if card is None or errors:  # read_card (or the repeated keys) recorded why
            raise ValidationFailed(
                errors or {"CardDetails": ["The CardDetails field is required."]}
            )
        point = call.recovery_point(render)  # the answer commits with the setup intent
        return call.ok(render(await call.run(intake.create, call.account, cmd, card, point)))

    def render_public(si: SetupIntent) -> dict[str, Any]:
        return responses.setup_intent_json(si, schemes, public=True)

    async def add_card(call: Call) -> Response:
        """``POST /setup-intents/public/{id}/card`` (CONTRACT §9): only the client session
        secret authorizes it, never an account key."""
        secret = call.credential
        if secret is None or secret.startswith("sk_"):
            raise ClientSecretInvalid(
                "Send the client session secret as Authorization: Basic <secret>."
            )
        errors: Errors = {}
        for path in repeated_keys(call.raw_body, "cardDetails"):
            add(errors, path, f"The {path} field appears more than once.")
        card = read_card(call.body, errors, accepted, services.ctx.clock.now())
        consent = isinstance(call.body, dict) and any(
            k.lower() == "mitconsentgiven" for k in call.body
        )
        if not consent:  # the page's checkbox: a card kept for later charges needs it
            add(errors, "MitConsentGiven", "The MitConsentGiven field is required.")
        if card is None or errors:
            raise ValidationFailed(
                errors or {"CardDetails": ["The CardDetails field is required."]}
            )
        point = call.recovery_point(render_public)  # the answer commits with the card
        si = await call.run(intake.add_card, call.param("si"), secret, card, point)
        return call.ok(render_public(si))

    routes: list[BaseRoute] = [
        health_route(services),
        edge.route("/setup-intents", {"POST": create}),
        *page_routes(services.setup_intents),
        edge.route("/setup-intents/public/{si}/card", {"POST": add_card}, auth="raw"),
        Route("/metrics", not_implemented("Metrics"), methods=["GET"]),
    ]
    return assemble(routes, "pci")
