"""A real cardkeep process for end-to-end tests: both listeners over HTTP on 127.0.0.1, on a SQLite
file or a PostgreSQL database of its own, the server's log captured to a file that tests can scan,
and the raw stored bytes (database files, WAL) that tests can search."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cardkeep.bootstrap import Runtime
from cardkeep.config import Settings, from_env
from cardkeep.domain.account import Mode
from tests.merchant import (  # re-exported: the e2e tests import them from here
    APPROVED_CARD,
    DECLINED_CARD,
    SI_FIELDS,
    TEST_PANS,
    VERSION,
    MerchantRequests,
    card,
)

__all__ = [
    "APPROVED_CARD",
    "DECLINED_CARD",
    "SI_FIELDS",
    "TEST_PANS",
    "VERSION",
    "Merchant",
    "Server",
    "alive",
    "card",
    "free_port",
    "http_client",
    "internal_url",
    "processes_of",
    "run_server",
    "workers_of",
]


# A kept-alive connection is dropped by the client well before the server's keep-alive timeout
# (5 s) closes it, so no request is ever sent on a connection the server is closing.
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=1.0)


def http_client(
    base_url: str, headers: dict[str, str] | None = None, timeout: float = 30
) -> httpx.Client:
    """An HTTP client for a test server."""
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout, limits=CLIENT_LIMITS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    api_url: str
    pci_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    database_url: str | None = None  # None: SQLite in the data directory
    started_at: float = field(default_factory=time.time)
    env: dict[str, str] = field(default_factory=dict)  # the CARDKEEP_* variables it was given

    @property
    def engine(self) -> str:
        return "postgres" if self.database_url else "sqlite"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "cardkeep.db"

    @property
    def settings(self) -> Settings:
        """The server's settings, its keys included (a process on its database with other keys
        is refused: ``service.key_checks``)."""
        given = {k: v for k, v in self.env.items() if k.startswith("CARDKEEP_")}
        return from_env(given).with_overrides(
            data_dir=self.data_dir, database_url=self.database_url
        )

    def create_account(self, name: str = "merchant", mode: str = "sandbox") -> str:
        """A new account's secret key (through the service, on the server's own database)."""
        return self.create_accounts(1, name, mode)[0]

    def create_accounts(
        self, count: int, name: str = "merchant", mode: str = "sandbox"
    ) -> list[str]:
        """``count`` new accounts' secret keys, in one go."""
        with Runtime.open(self.settings) as runtime:
            accounts = runtime.services.accounts
            names = [name] if count == 1 else [f"{name}-{i}" for i in range(count)]
            return [accounts.create(each, Mode(mode))[2] for each in names]

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the server's database, behind its back (``?`` placeholders),
        committed; the rows it returns."""
        if self.database_url is None:
            with sqlite3.connect(self.db_path) as conn:
                return conn.execute(query, params).fetchall()
        with psycopg.connect(self.database_url, autocommit=True) as pg:
            cur = pg.execute(query.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def stored_files(self) -> list[Path]:
        """Every file that holds what this server stored: the data directory (and for SQLite the
        database, its WAL and SHM), or for PostgreSQL this database's files and the WAL written
        since the server started."""
        files = [p for p in self.data_dir.rglob("*") if p.is_file()]
        if self.database_url is None:
            for suffix in ("", "-wal", "-shm"):
                p = self.db_path.with_name(self.db_path.name + suffix)
                if p.exists() and p not in files:
                    files.append(p)
            return files
        with psycopg.connect(self.database_url, autocommit=True) as pg:
            pg.execute("CHECKPOINT")
            row = pg.execute(
                "SELECT current_setting('data_directory'),"
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
        assert row is not None
        cluster, oid = Path(row[0]), row[1]
        files += [p for p in (cluster / "base" / str(oid)).iterdir() if p.is_file()]
        files += [p for p in (cluster / "pg_wal").iterdir() if self._written_since_start(p)]
        return files

    def _written_since_start(self, path: Path) -> bool:
        """A WAL segment written since the server started (False for one PostgreSQL recycled
        between the listing and this look)."""
        try:
            return path.is_file() and path.stat().st_mtime >= self.started_at - 1
        except FileNotFoundError:
            return False

    def stored_bytes(self) -> bytes:
        """The raw bytes of ``stored_files``; a WAL segment that PostgreSQL recycled between the
        listing and the read is skipped (its name moved on, with other databases' writes)."""
        chunks = []
        for path in self.stored_files():
            try:
                chunks.append(path.read_bytes())
            except FileNotFoundError:
                continue
        return b"".join(chunks)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")


ROLE_NAMES = {"api": "cardkeep-api", "pci": "cardkeep-pci"}


def workers_of(parent: int, role: str | None = None) -> set[int]:
    """The processes ``parent`` supervises (not multiprocessing's resource tracker): all of them,
    or those of one role (``api``: the API workers; ``pci``: the PCI process), told apart by the
    name each gives itself once started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != parent or b"spawn_main" not in cmdline:
            continue
        if role is not None and _comm(entry) != ROLE_NAMES[role]:
            continue
        found.add(int(entry.name))
    return found


def processes_of(server: Server, role: str, count: int = 1) -> set[int]:
    """Once ``count`` processes of ``role`` run under ``server``'s supervisor: their pids."""
    deadline = time.monotonic() + 30
    while len(found := workers_of(server.proc.pid, role)) != count:
        assert time.monotonic() < deadline, f"{count} {role} processes never ran: {found}"
        time.sleep(0.05)
    return found


def _comm(proc_dir: Path) -> str | None:
    try:
        return (proc_dir / "comm").read_text().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def read_ports(data_dir: Path, pid: int) -> tuple[int, int] | None:
    """The (API, PCI) ports that the server with ``pid`` wrote to ``ports.json``, once it has
    (``internal_url`` reads the internal listener's)."""
    try:
        doc = json.loads((data_dir / "ports.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("pid") != pid:
        return None  # a file left by an earlier server
    return int(doc["api"]), int(doc["pci"])


def internal_url(data_dir: Path) -> str:
    """The internal listener's URL, from the ``ports.json`` of the server on ``data_dir``."""
    doc = json.loads((data_dir / "ports.json").read_text("utf-8"))
    return f"http://127.0.0.1:{doc['internal']}"


def _start(
    data_dir: Path, workers: int, env: dict[str, str] | None, database_url: str | None
) -> Server:
    """Start a server on free ports (``--api-port 0``) and wait until both listeners answer."""
    log_path = data_dir / "server.log"
    full_env = {
        **os.environ,
        "CARDKEEP_SWEEP_INTERVAL": "0.2",
        "CARDKEEP_RECOVERY_AFTER": "0.5",
        "CARDKEEP_DISPATCH_INTERVAL": "0.2",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "cardkeep", "serve", "--data-dir", str(data_dir)]
    cmd += ["--api-port", "0", "--pci-port", "0", "--internal-port", "0"]
    cmd += ["--workers", str(workers)]
    if database_url is not None:
        cmd += ["--database-url", database_url]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + 30
    server: Server | None = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cardkeep exited early:\n{log_path.read_text('utf-8')}")
        if server is None:
            ports = read_ports(data_dir, proc.pid)
            if ports is not None:
                api, pci = (f"http://127.0.0.1:{port}" for port in ports)
                server = Server(data_dir, api, pci, log_path, proc, database_url, env=env or {})
        if server is not None:
            try:
                urls = (server.api_url, server.pci_url)
                if all(httpx.get(f"{u}/health", timeout=1).status_code == 200 for u in urls):
                    return server
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"cardkeep did not start:\n{log_path.read_text('utf-8')}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def run_server(
    data_dir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[Server]:
    """A server on ``data_dir``, on SQLite there, or on ``database_url`` (PostgreSQL)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _start(data_dir, workers, env, database_url)
    try:
        yield server
    finally:
        _stop(server.proc)


class Merchant(MerchantRequests):
    """One account's view of both listeners of a real server, over HTTP."""

    api: httpx.Client
    pci: httpx.Client

    def __init__(self, server: Server, key: str) -> None:
        headers = {"Authorization": f"Basic {key}", "version": VERSION}
        super().__init__(
            http_client(server.api_url, headers),
            http_client(server.pci_url, headers),
            key,
        )
        self.server = server
