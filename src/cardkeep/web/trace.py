"""Trace ids: a W3C ``traceparent``-style id per request, reused when the client sent one.

A trace id is the handle that ties a response to its access-log line, so it must pass the log's
card-data redaction unchanged. Its hex digits can form a Luhn-valid run of 12-19 digits (about one
id in a few hundred), which ``logs.redact`` would mask, and then the line the response names could
not be found. So a generated id that redaction would change is drawn again, and a client's
``traceparent`` that redaction would change (it could carry a card number) is replaced, never
echoed or logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from starlette.requests import Request

from cardkeep.domain.card import mask_pans

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def survives_redaction(trace: str) -> bool:
    return mask_pans(trace) == trace


def new_trace_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    while True:
        trace = f"00-{random_bytes(16).hex()}-{random_bytes(8).hex()}-01"
        if survives_redaction(trace):
            return trace


def incoming_or_new(value: str) -> str:
    if TRACEPARENT.match(value) and survives_redaction(value):
        return value
    return new_trace_id()


def trace_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("trace_id") or new_trace_id())
