"""Payment-intent routes: create, read, cancel, charge."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.api.routes.params import flag
from cardkeep.domain.errors import NotFound
from cardkeep.domain.payment_intent import PaymentIntent, Status
from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.pipeline import Call, Edge

# From this release on, a Canceled payment intent is 404 unless ?returnCanceled=true (§5.2).
HIDES_CANCELED_FROM = "2024-02-05"


def routes(edge: Edge, services: Services) -> list[Route]:
    pis = services.payment_intents
    schemes = services.card_schemes

    def render(pi: PaymentIntent) -> dict[str, Any]:
        return responses.payment_intent_json(pi, schemes)

    async def create(call: Call) -> Response:
        cmd = requests.payment_intent_command(call.body)
        point = call.recovery_point(render)
        return call.ok(render(await call.run(pis.create, call.account, cmd, point)))

    async def get(call: Call) -> Response:
        show_canceled = flag(call.query("returnCanceled"), "returnCanceled")
        pi = await call.run(pis.get, call.account, call.param("pi"))
        hides = call.release is not None and call.release >= HIDES_CANCELED_FROM
        if pi.status is Status.CANCELED and hides and not show_canceled:
            raise NotFound(
                f"The payment intent {pi.id} is Canceled; pass returnCanceled=true to read it."
            )
        return call.ok(responses.payment_intent_json(pi, schemes))

    async def cancel(call: Call) -> Response:
        pi = await call.run(pis.cancel, call.account, call.param("pi"))
        return call.ok(responses.payment_intent_json(pi, schemes))

    async def charge(call: Call) -> Response:
        answer = await call.run(pis.charge, call.account, call.param("pi"), call.idempotency_token)
        return call.ok(responses.charge_json(answer))

    return [
        edge.route("/payment-intents", {"POST": create}),
        edge.route("/payment-intents/{pi}", {"GET": get, "DELETE": cancel}),
        edge.route("/payment-intents/{pi}/charge", {"POST": charge}),
    ]
