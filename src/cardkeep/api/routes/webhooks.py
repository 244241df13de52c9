"""Webhook routes: Dojo's subscription API (events, subscriptions, secrets) and the delivery log
with replay (Extension), CONTRACT §8.1 and §8.5."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.domain import webhooks as rules
from cardkeep.domain.errors import ValidationFailed
from cardkeep.service.facade import Services
from cardkeep.web import responses
from cardkeep.web.pipeline import Call, Edge

FIELDS = ("events", "url", "description")


def _body(call: Call, *, required: tuple[str, ...]) -> dict[str, Any]:
    """The subscription fields of the body, keys matched without regard to case (as Dojo's
    ASP.NET binding does); a null counts as absent."""
    if not isinstance(call.body, dict):
        raise ValidationFailed.one("$", "The request body must be a JSON object.")
    found = {k.lower(): v for k, v in call.body.items() if k.lower() in FIELDS and v is not None}
    missing = {
        name.capitalize(): [f"The {name.capitalize()} field is required."]
        for name in required
        if name not in found
    }
    if missing:
        raise ValidationFailed(missing)
    return found


def _limit(call: Call) -> int:
    raw = call.query("limit")
    if raw is None:
        return 50
    if not raw.isdigit():
        raise ValidationFailed.one("limit", "The limit must be a whole number.")
    return int(raw)


def routes(edge: Edge, services: Services) -> list[Route]:
    hooks = services.webhooks

    async def events(call: Call) -> Response:
        return call.ok(
            [{"model": model, "events": list(names)} for model, names in rules.CATALOGUE]
        )

    async def create(call: Call) -> Response:
        body = _body(call, required=("events", "url"))
        point = call.recovery_point(responses.subscription_json)  # commits with the subscription
        sub = await call.run(
            hooks.create, call.account, body["events"], body["url"], body.get("description"), point
        )
        return call.ok(responses.subscription_json(sub))

    async def list_all(call: Call) -> Response:
        subs = await call.run(hooks.all, call.account)
        return call.ok([responses.subscription_json(s) for s in subs])

    async def update(call: Call) -> Response:
        body = _body(call, required=())
        account = call.account
        assert account is not None

        def run() -> Any:
            return hooks.update(account, call.param("sub"), **body)

        return call.ok(responses.subscription_json(await call.run(run)))

    async def delete(call: Call) -> Response:
        await call.run(hooks.delete, call.account, call.param("sub"))
        return call.no_content()

    async def secrets(call: Call) -> Response:
        sub = await call.run(hooks.get, call.account, call.param("sub"))
        return call.ok(responses.secrets_json(sub))

    async def add_secret(call: Call) -> Response:
        point = call.recovery_point(responses.secrets_json)
        sub = await call.run(hooks.add_secret, call.account, call.param("sub"), point)
        return call.ok(responses.secrets_json(sub))

    async def activate(call: Call) -> Response:
        await call.run(hooks.activate_secret, call.account, call.param("sub"), call.param("sc"))
        return call.no_content()

    async def delete_secret(call: Call) -> Response:
        await call.run(hooks.delete_secret, call.account, call.param("sub"), call.param("sc"))
        return call.no_content()

    async def deliveries(call: Call) -> Response:
        assert call.account is not None
        account = call.account

        def run() -> Any:
            return hooks.deliveries(
                account,
                status=call.query("status"),
                subscription_id=call.query("subscriptionId"),
                after=call.query("after"),
                limit=_limit(call),
            )

        page, after = await call.run(run)
        return call.ok(responses.deliveries_json(page, after))

    async def replay(call: Call) -> Response:
        point = call.recovery_point(responses.delivery_json)
        delivery = await call.run(hooks.replay, call.account, call.param("whd"), point)
        return call.ok(responses.delivery_json(delivery))

    return [
        edge.route("/webhooks/events", {"GET": events}),
        edge.route("/webhooks/deliveries", {"GET": deliveries}),
        edge.route("/webhooks/deliveries/{whd}/replay", {"POST": replay}),
        edge.route("/webhooks", {"GET": list_all, "POST": create}),
        edge.route("/webhooks/{sub}", {"PATCH": update, "DELETE": delete}),
        edge.route("/webhooks/{sub}/secrets", {"GET": secrets, "POST": add_secret}),
        edge.route("/webhooks/{sub}/secrets/{sc}/activate", {"PUT": activate}),
        edge.route("/webhooks/{sub}/secrets/{sc}", {"DELETE": delete_secret}),
    ]
