"""Refund and reversal routes (CONTRACT §5.5-5.6): create a refund (Dojo's ``idempotencyKey``
header required, scoped to the payment intent), read a refund, reverse a payment intent."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.domain.refund import Refund
from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.idempotency import REFUNDS
from cardkeep.web.pipeline import Call, Edge


def routes(edge: Edge, services: Services) -> list[Route]:
    refunds = services.refunds

    def render(refund: Refund) -> dict[str, Any]:
        return responses.refund_json(refund)

    async def create(call: Call) -> Response:
        new = requests.refund_command(call.body)
        args = (call.account, call.param("pi"), new, call.idempotency_token)
        return call.ok(render(await call.run(refunds.refund, *args)))

    async def get(call: Call) -> Response:
        return call.ok(render(await call.run(refunds.get, call.account, call.param("refund"))))

    async def reverse(call: Call) -> Response:
        args = (call.account, call.param("pi"), call.idempotency_token)
        return call.ok(responses.reversal_json(await call.run(refunds.reverse, *args)))

    return [
        edge.route("/payment-intents/refunds/{refund}", {"GET": get}),
        edge.route("/payment-intents/{pi}/refunds", {"POST": create}, keys=REFUNDS),
        edge.route("/payment-intents/{pi}/reversal", {"POST": reverse}),
    ]
