"""Trace ids: a W3C ``traceparent``-style id per request, reused when the client sent one."""

from __future__ import annotations

import os
import re

from starlette.requests import Request

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_trace_id() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def incoming_or_new(value: str) -> str:
    return value if TRACEPARENT.match(value) else new_trace_id()


def trace_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("trace_id") or new_trace_id())
