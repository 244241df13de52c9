"""The HTTP/1.1 edge of both listeners: what a client may send before any app sees a request.

Owns the limits that hold before authentication, on uvicorn's h11 protocol (httptools has no
header-size limit and no header-read timeout):

- a request line of at most 8 KiB, else 414; request headers of at most 16 KiB and 100 fields,
  else 431. Both answers are ProblemDetails (``web.errors``), then the connection is closed after a
  short lingering read, so the client reads the answer instead of a reset. h11 never buffers more
  than the line and headers together may take, and the lingering read drops at most 1 MiB, so a
  header flood costs a bounded read, not its size;
- a header-read timeout: a connection that has not sent a complete request head within
  ``header_timeout`` of its start, or of the end of the previous response, is closed (data that
  trickles in does not extend it);
- the idle keep-alive timeout (uvicorn's ``timeout_keep_alive``);
- a cap on open connections per process, over both listeners: a connection beyond it is closed as
  soon as it is accepted, before anything is read, and the process serves the ones it holds.

It must not touch requests that pass: the apps, their bodies and their answers are uvicorn's and
Starlette's. Malformed HTTP other than size is uvicorn's 400, as before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cardkeep.logs import get_logger
from cardkeep.web.errors import TITLES, HeaderFieldsTooLarge, HttpError, UriTooLong, from_exception
from cardkeep.web.problems import encode
from cardkeep.web.trace import new_trace_id

log = get_logger("cardkeep.http_server")

# After a refusal: how long, and how many bytes, the rest of the request is read and dropped
# before the connection is closed, so that closing with unread data (a reset) does not destroy the
# answer on its way to the client.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    request_line: int = 8 * 1024
    header_bytes: int = 16 * 1024  # each field counted as ``name: value`` and its CRLF
    header_count: int = 100
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000

    @property
    def head_bytes(self) -> int:
        """The most h11 buffers of an incomplete request head: the line, the headers, CRLFs."""
        return self.request_line + self.header_bytes + 4

    def refusal(self, request: h11.Request) -> HttpError | None:
        """Why a complete request head is refused, if it is."""
        line = len(request.method) + len(request.target) + len(b"HTTP/1.1") + 2  # 2 spaces
        if line > self.request_line:
            return UriTooLong(f"The request line is longer than {self.request_line} bytes.")
        if len(request.headers) > self.header_count:
            return HeaderFieldsTooLarge(f"A request may have at most {self.header_count} headers.")
        if sum(len(name) + len(value) + 4 for name, value in request.headers) > self.header_bytes:
            return HeaderFieldsTooLarge(
                f"The request headers are larger than {self.header_bytes} bytes."
            )
        return None

    def overflow(self, received: bytes) -> HttpError:
        """Why an incomplete head that outgrew the buffer is refused: its first line, or not."""
        line_end = received.find(b"\n")
        if line_end < 0 or line_end > self.request_line + 1:
            return UriTooLong(f"The request line is longer than {self.request_line} bytes.")
        return HeaderFieldsTooLarge(
            f"The request line and headers are larger than {self.head_bytes} bytes."
        )


class ConnectionBudget:
    """The open connections of one process, counted over both listeners (one event loop). Reaching
    the cap is logged at most once a minute, so a flood does not become a flood of log lines."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._logged_at: float | None = None

    def take(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            now = time.monotonic()
            if self._logged_at is None or now - self._logged_at >= 60:
                self._logged_at = now
                log.warning(
                    "connection_cap_reached", max_connections=self.limit, refused=self.refused
                )
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class _Connection(h11.Connection):
    """h11's server side, checked where a request head is complete or has outgrown its buffer."""

    def __init__(self, protocol: LimitedH11Protocol) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=protocol.limits.head_bytes)
        self._protocol = protocol

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        limits = self._protocol.limits
        reading_head = self.their_state is h11.IDLE
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint != 431 or not reading_head:
                raise  # malformed, or a body's chunk line: uvicorn's 400
            self._protocol.refuse(limits.overflow(self.trailing_data[0]))
            return h11.NEED_DATA  # uvicorn stops reading events; the protocol drops the rest
        if isinstance(event, h11.Request):
            refusal = limits.refusal(event)
            if refusal is not None:
                self._protocol.refuse(refusal)
                return h11.NEED_DATA
            self._protocol.head_complete()
        return event


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits above; ``protocol_class`` binds them."""

    limits: ClassVar[Limits]
    budget: ClassVar[ConnectionBudget]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(self)
        # uvicorn arms this after each response (with loop.call_later, so a float is fine).
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._counted = False
        self._refused = False
        self._linger_left = LINGER_BYTES
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.budget.take():
            self._refused = True
            self.transport = transport
            transport.close()  # nothing read, nothing answered: the client sees it closed
            return
        self._counted = True
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        if self._counted:
            self._counted = False
            self.budget.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.transport.close()
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._start_header_timer()  # the next request's head; a pipelined one stops it at once
        super().on_response_complete()

    def _unsupported_upgrade_warning(self) -> None:
        """cardkeep serves no WebSocket: an ``Upgrade`` request is served as plain HTTP, without
        the two warning lines per request that uvicorn would write for anyone who sends one."""

    def shutdown(self) -> None:
        if self._refused:
            self.transport.close()
            return
        super().shutdown()

    # -- called by _Connection -------------------------------------------------------------------

    def head_complete(self) -> None:
        self._stop_header_timer()

    def refuse(self, error: HttpError) -> None:
        """Answer ``error`` as ProblemDetails, then read and drop what follows for a moment."""
        self._refused = True
        self._stop_header_timer()
        self._unset_keepalive_if_required()
        problem = from_exception(error)
        trace = new_trace_id()
        body = encode(problem, trace)
        head = (
            f"HTTP/1.1 {problem.status} {TITLES[problem.code]}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            f"traceparent: {trace}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        log.debug("request_refused", status=problem.status, code=problem.code.value)

    # -- the header-read timeout ------------------------------------------------------------------

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._header_timeout_expired
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(limits: Limits) -> type[LimitedH11Protocol]:
    """The protocol class for one process's listeners: ``limits``, and one connection budget
    shared by every listener that uses the returned class."""

    class Protocol(LimitedH11Protocol):
        pass

    Protocol.limits = limits
    Protocol.budget = ConnectionBudget(limits.max_connections)
    return Protocol
