"""A webhook receiver on 127.0.0.1 for tests: records every POST (headers and raw body) and
answers from a script of statuses (then 204), the way a merchant's endpoint would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str
    posts: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer first, in order
    # Or: the status for a POST, given it and every POST before it (after the script is used up).
    policy: Callable[[Received, list[Received]], int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 20
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                seen = list(self.posts)
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(seen)} POSTs: {seen[-3:]}")
            time.sleep(0.05)


@contextmanager
def receiver() -> Iterator[Receiver]:
    state: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec: Receiver = state["receiver"]
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                return  # the sender died mid-request (a killed dispatcher): nothing arrived
            post = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
            )
            with rec.lock:
                if rec.script:
                    status = rec.script.pop(0)
                elif rec.policy is not None:
                    status = rec.policy(post, rec.posts)
                else:
                    status = 204
                rec.posts.append(post)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # a dispatcher's burst of concurrent POSTs is not refused

    server = Server(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
