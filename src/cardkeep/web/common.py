"""Endpoints both listeners serve the same way: health, and the app assembly around the routes."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cardkeep.domain.timefmt import iso
from cardkeep.logs import get_logger
from cardkeep.service.facade import Services
from cardkeep.web.guard import Guard
from cardkeep.web.problems import http_exception, internal_error
from cardkeep.web.responses import json_response

log = get_logger("cardkeep.health")


def health_route(services: Services) -> Route:
    """CONTRACT §11: 503 ``unavailable`` when the database does not answer; 200 ``degraded``
    when it does but a background loop is late; else 200 ``ok``."""

    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(services.ctx.storage.ping)
        except Exception as exc:  # any failure to answer is "unavailable"
            log.warning("health_check_failed", error_type=type(exc).__name__)
            return json_response(
                {"status": "unavailable", "reason": "the database does not answer"}, status=503
            )
        late = services.heartbeats.late()
        if late:
            loops = {name: {"lastRunAt": iso(at)} for name, at in sorted(late.items())}
            return json_response({"status": "degraded", "loops": loops})
        return json_response({"status": "ok"})

    return Route("/health", health, methods=["GET"])


def assemble(routes: Sequence[BaseRoute], listener: str) -> ASGIApp:
    app = Starlette(
        routes=list(routes),
        exception_handlers={HTTPException: http_exception, Exception: internal_error},
    )
    return Guard(app, listener)
