"""create_api_app: the API listener's routes, in one place, around the shared pipeline."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cardkeep.api.routes import payment_intents, refunds, sandbox, setup_intents, webhooks
from cardkeep.service.facade import Services
from cardkeep.web.common import assemble, health_route
from cardkeep.web.idempotency import IdempotencyStep, Seal
from cardkeep.web.pipeline import Edge
from cardkeep.web.problems import not_implemented

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

# Dojo endpoints that cardkeep does not serve yet: a clear 404 not_implemented, never a 500.
NOT_YET = [
    ("/payment-intents/search", "Payment intent search"),
    ("/payment-intents/{pi}/captures", "Captures"),
    ("/payment-intents/{pi}/tips-amount", "Tips amount changes"),
    ("/payment-intents/{pi}/amount", "Amount changes"),
    ("/payment-intents/{pi}/receipt", "Receipts"),
    ("/payment-intents/{pi}/refresh-client-session-secret", "Payment intent client secrets"),
    ("/customers", "Customers"),
    ("/customers/{rest:path}", "Customers"),
    ("/terminals", "Terminals"),
    ("/terminals/{rest:path}", "Terminals"),
    ("/terminal-sessions", "Terminal sessions"),
    ("/terminal-sessions/{rest:path}", "Terminal sessions"),
    ("/epos/{rest:path}", "EPOS integrations"),
    ("/metrics", "Metrics"),
]


def create_api_app(services: Services, seal: Seal) -> ASGIApp:
    idempotency = IdempotencyStep(services.idempotency, seal)
    edge = Edge(services.accounts.authenticate, rejects_card_data=True, around=idempotency)
    routes: list[BaseRoute] = [health_route(services)]
    routes += [Route(path, not_implemented(name), methods=ALL_METHODS) for path, name in NOT_YET]
    routes += setup_intents.routes(edge, services)
    routes += refunds.routes(edge, services)
    routes += payment_intents.routes(edge, services)
    routes += sandbox.routes(edge, services)
    routes += webhooks.routes(edge, services)
    return assemble(routes, "api")
