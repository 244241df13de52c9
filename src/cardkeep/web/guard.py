"""``Guard``, the outermost middleware of both listeners: the trace id in and out, one redacted
access-log line per request (the path without its query string), and a last-resort 500
ProblemDetails that never carries a stack trace."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardkeep.logs import get_logger
from cardkeep.web.problems import internal_error_response
from cardkeep.web.trace import incoming_or_new

log = get_logger("cardkeep.http")


class Guard:
    def __init__(self, app: ASGIApp, listener: str) -> None:
        self.app = app
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), ""
        )
        trace = incoming_or_new(incoming)
        scope.setdefault("state", {})["trace_id"] = trace
        started = time.perf_counter()
        status = 0

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"traceparent", trace.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception as exc:
            log.error("unhandled_error", traceId=trace, error_type=type(exc).__name__, exc_info=exc)
            if status == 0:
                await internal_error_response(trace)(scope, receive, send_with_trace)
        finally:
            log.info(
                "request",
                listener=self.listener,
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
                traceId=trace,
            )
