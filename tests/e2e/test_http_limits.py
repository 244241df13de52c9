"""The HTTP edge under abuse, over raw sockets against a real server: oversized request lines and
headers are answered 414/431 (ProblemDetails) or the connection is closed, connections that do not
send a request head in time and idle keep-alive connections are closed, connections beyond the
process's cap are closed while the held ones are served, and a header flood on both listeners
neither stops a concurrent request nor grows the server's memory.

What is asserted is the protocol outcome (a status, a served request, a closed connection), never
a duration: the short timeouts configured here only keep the tests quick, and every wait is
bounded generously."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bad_input import problem
from tests.e2e.harness import Server, run_server, workers_of

BOUND = 15.0  # seconds any one wait may take before the test fails: far above every timeout here
REQUEST_LINE = 8 * 1024
HEADER_BYTES = 16 * 1024
HEADER_COUNT = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose header-read and keep-alive timeouts are 1 s, to keep the tests short."""
    env = {"CARDKEEP_HEADER_TIMEOUT": "1", "CARDKEEP_KEEP_ALIVE_TIMEOUT": "1"}
    with run_server(tmp_path_factory.mktemp("cardkeep-limits"), env=env) as srv:
        yield srv


# -- raw HTTP/1.1 ----------------------------------------------------------------------------------


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=BOUND)
    sock.settimeout(BOUND)
    return sock


def head(target: str = "/health", headers: list[tuple[str, str]] | None = None) -> bytes:
    """A GET request head; ``headers`` are all it carries (add Host yourself)."""
    lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (with a Content-Length) from ``sock``; the connection stays usable."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a response body"
        body += chunk
    assert len(body) == length, "more than one response"
    return int(status_line.split()[1]), headers, body


def exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(url) as sock:
        sock.sendall(request)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within BOUND, having sent nothing."""
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    assert data == b"", f"the server answered instead of closing: {data!r}"
    return True


def served(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=BOUND).status_code == 200


STATUS_OF = {"uri_too_long": 414, "headers_too_large": 431}


def refused(response: tuple[int, dict[str, str], bytes], code: str) -> None:
    """A 414/431 answered by the HTTP edge: ProblemDetails, traced, and the connection closing."""
    status, headers, body = response
    assert status == STATUS_OF[code], (status, body)
    doc = json.loads(body)
    assert doc["status"] == status, doc
    assert doc["code"] == code, doc
    assert doc["title"], doc
    assert doc["detail"], doc
    assert headers["content-type"] == "application/problem+json", headers
    assert headers["traceparent"] == doc["traceId"], (headers, doc)
    assert headers["connection"] == "close", headers


def fill(name: str, total: int, others: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``others`` plus one header ``name`` sized so that all of them take exactly ``total``
    bytes, each counted as ``name: value`` and its CRLF."""
    used = sum(len(n) + len(v) + 4 for n, v in others)
    return [*others, (name, "v" * (total - used - len(name) - 4))]


BASE = [("Host", "cardkeep.test"), ("Connection", "close")]


# -- (a) the request line --------------------------------------------------------------------------


def test_a_request_line_over_8_kib_is_414_and_one_of_8_kib_is_served(server: Server) -> None:
    fixed = len("GET /health?q= HTTP/1.1")
    longest = "/health?q=" + "a" * (REQUEST_LINE - fixed)
    status, _, _ = exchange(server.api_url, head(longest, BASE))
    assert status == 200
    refused(exchange(server.api_url, head(longest + "a", BASE)), "uri_too_long")


def test_a_request_line_that_outgrows_the_head_buffer_is_414(server: Server) -> None:
    refused(exchange(server.pci_url, b"GET /health?q=" + b"a" * 40_000), "uri_too_long")


def test_an_http_client_gets_the_414_as_problem_details(server: Server) -> None:
    r = httpx.get(f"{server.api_url}/health", params={"q": "a" * 9000}, timeout=BOUND)
    problem(r, 414, "uri_too_long")


# -- (b, c) the headers ----------------------------------------------------------------------------


def test_headers_over_16_kib_are_431_and_16_kib_are_served(server: Server) -> None:
    status, _, _ = exchange(server.api_url, head(headers=fill("X-Fill", HEADER_BYTES, BASE)))
    assert status == 200
    over = fill("X-Fill", HEADER_BYTES + 1, BASE)
    refused(exchange(server.api_url, head(headers=over)), "headers_too_large")


def test_headers_that_outgrow_the_head_buffer_are_431(server: Server) -> None:
    huge = head(headers=[*BASE, ("X-Huge", "v" * 200_000)])
    refused(exchange(server.pci_url, huge), "headers_too_large")


def test_101_headers_are_431_and_100_are_served(server: Server) -> None:
    hundred = [*BASE, *((f"X-H{i}", "v") for i in range(HEADER_COUNT - len(BASE)))]
    status, _, _ = exchange(server.api_url, head(headers=hundred))
    assert status == 200
    refused(
        exchange(server.api_url, head(headers=[*hundred, ("X-One", "more")])), "headers_too_large"
    )


def test_an_http_client_gets_the_431_as_problem_details(server: Server) -> None:
    many = {f"X-H{i}": "v" for i in range(HEADER_COUNT)}
    r = httpx.get(f"{server.pci_url}/health", headers=many, timeout=BOUND)
    problem(r, 431, "headers_too_large")


# -- (d, e) the header-read timeout ----------------------------------------------------------------


def test_connections_without_a_complete_head_are_closed_while_others_are_served(
    server: Server,
) -> None:
    silent = connect(server.api_url)
    half = connect(server.pci_url)
    half.sendall(b"GET /health HTTP/1.1\r\nHost: cardkeep.test\r\nX-Slow: ")
    try:
        assert served(server.api_url)  # meanwhile, on other connections
        assert served(server.pci_url)
        assert closed_by_server(silent)
        assert closed_by_server(half)
    finally:
        silent.close()
        half.close()


def test_a_head_trickled_byte_by_byte_is_closed_all_the_same(server: Server) -> None:
    """Data that keeps arriving does not extend the header-read timeout (slowloris)."""
    endless = b"GET /health HTTP/1.1\r\nHost: cardkeep.test\r\nX-Slow: " + b"a" * 10_000
    with connect(server.api_url) as sock:
        closed = False
        deadline = time.monotonic() + BOUND
        for byte in endless:
            if time.monotonic() > deadline:
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                closed = closed_by_server(sock)
                break
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed


# -- (f) keep-alive ----------------------------------------------------------------------------------


def test_an_idle_keep_alive_connection_is_closed_after_its_response(server: Server) -> None:
    with connect(server.api_url) as sock:
        sock.sendall(head(headers=[("Host", "cardkeep.test")]))
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers.get("connection") != "close"
        assert closed_by_server(sock)


def test_the_header_timeout_counts_per_request_not_per_connection(server: Server) -> None:
    """Requests on one keep-alive connection, spaced so that together they outlast the 1 s
    header-read timeout, are all served."""
    with connect(server.api_url) as sock:
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < 2.5:
            sock.sendall(head(headers=[("Host", "cardkeep.test")]))
            assert read_response(sock)[0] == 200
            count += 1
            time.sleep(0.2)
        assert count >= 5


def test_an_upgrade_request_is_served_as_plain_http_without_log_lines(server: Server) -> None:
    upgrade = [*BASE, ("Upgrade", "websocket")]
    upgrade[1] = ("Connection", "Upgrade, close")
    assert exchange(server.api_url, head(headers=upgrade))[0] == 200
    assert "upgrade" not in server.log_text().lower()


# -- (g) the connection cap ----------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_closed_while_the_held_ones_are_served(
    tmp_path: Path,
) -> None:
    cap = 8
    env = {
        "CARDKEEP_MAX_CONNECTIONS": str(cap),
        "CARDKEEP_HEADER_TIMEOUT": "60",
        "CARDKEEP_KEEP_ALIVE_TIMEOUT": "60",
    }
    keep_alive = head(headers=[("Host", "cardkeep.test")])

    def hold(url: str) -> socket.socket | None:
        """A connection that has been served once, or None if the server closed it."""
        sock = connect(url)
        try:
            sock.sendall(keep_alive)
            if read_response(sock)[0] == 200:
                return sock
        except (AssertionError, ConnectionResetError, BrokenPipeError):
            pass
        sock.close()
        return None

    def hold_eventually(url: str) -> socket.socket:
        """The start-up checks' connections are released as the server notices them closed."""
        deadline = time.monotonic() + BOUND
        while (sock := hold(url)) is None:
            assert time.monotonic() < deadline, "no connection was served"
            time.sleep(0.05)
        return sock

    with run_server(tmp_path, env=env) as server:
        # Each process has its own cap: the API worker's over the API listener, the PCI
        # process's over the PCI and internal listeners.
        held = [hold_eventually(server.api_url) for _ in range(cap)]
        try:
            assert hold(server.api_url) is None  # one over the API worker's cap
            pci_held = hold_eventually(server.pci_url)  # another process: served
            held.append(pci_held)
            for sock in held:  # the held ones are served
                sock.sendall(keep_alive)
                assert read_response(sock)[0] == 200
            held.remove(pci_held)
            pci_held.close()
            held.pop().close()  # a slot frees up once the server sees it closed
            held.append(hold_eventually(server.api_url))
            assert hold(server.api_url) is None
            held += [hold_eventually(server.pci_url) for _ in range(cap)]
            assert hold(server.pci_url) is None  # one over the PCI process's cap
        finally:
            for sock in held:
                sock.close()


# -- (h) a header flood ------------------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_header_flood_on_both_listeners_neither_stops_a_request_nor_grows_memory(
    server: Server,
) -> None:
    """Eight connections each start a 50 MB header, four per listener: each is answered 431 or
    closed after a bounded read, a request on another connection is served meanwhile on both
    listeners, and the server's peak memory stays where it was (this grew by the floods' size)."""
    floods, chunk, chunks = 8, b"a" * (1 << 20), 50
    started = threading.Barrier(floods + 1, timeout=BOUND)
    outcomes: list[str] = []
    serving = workers_of(server.proc.pid)  # the PCI process and the API worker
    assert len(serving) == 2
    before = {pid: peak_rss_kib(pid) for pid in serving}

    def flood(url: str) -> None:
        with connect(url) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: cardkeep.test\r\nX-Flood: ")
            started.wait()
            try:
                for _ in range(chunks):
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            outcomes.append(data.split(b"\r\n", 1)[0].decode("latin-1") or "closed")

    threads = [
        threading.Thread(target=flood, args=((server.api_url, server.pci_url)[i % 2],))
        for i in range(floods)
    ]
    for thread in threads:
        thread.start()
    started.wait()
    assert served(server.api_url)
    assert served(server.pci_url)
    for thread in threads:
        thread.join(BOUND)
        assert not thread.is_alive()
    assert len(outcomes) == floods
    assert set(outcomes) <= {"HTTP/1.1 431 Request Header Fields Too Large", "closed"}, outcomes
    for pid in serving:
        grown_mib = (peak_rss_kib(pid) - before[pid]) / 1024
        assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB under {floods} x 50 MB"
