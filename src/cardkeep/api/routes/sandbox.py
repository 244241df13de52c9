"""The sandbox clock (Extension, §7.3): read it and move it forward, sandbox keys only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from cardkeep.service.facade import Services
from cardkeep.web import requests, responses
from cardkeep.web.pipeline import Call, Edge


def routes(edge: Edge, services: Services) -> list[Route]:
    accounts = services.accounts

    async def read(call: Call) -> Response:
        now, offset = await call.run(accounts.clock, call.account)
        return call.ok(responses.clock_json(now, offset))

    def render(moved: tuple[datetime, int]) -> dict[str, Any]:
        return responses.clock_json(*moved)

    async def advance(call: Call) -> Response:
        seconds = requests.advance_seconds(call.body)
        point = call.recovery_point(render)  # a retry after a crash never moves it twice
        return call.ok(render(await call.run(accounts.advance_clock, call.account, seconds, point)))

    return [
        edge.route("/sandbox/clock", {"GET": read}),
        edge.route("/sandbox/clock/advance", {"POST": advance}),
    ]
