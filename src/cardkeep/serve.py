"""Running both listeners: one process (``--workers 1``) or N worker processes sharing two
listening sockets, each worker serving both apps. Worker 0 also runs the sweeper.

Signals are handled here, once for both servers, so SIGINT/SIGTERM stop everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from cardkeep.bootstrap import Runtime
from cardkeep.config import Settings
from cardkeep.logs import configure, get_logger

log = get_logger("cardkeep.serve")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # ``run_worker`` handles signals for both servers


PORTS_FILE = "ports.json"


def write_ports(data_dir: Path, host: str, *, api_port: int, pci_port: int) -> Path:
    """``<data dir>/ports.json``: the ports actually bound (``--api-port 0`` picks a free one),
    for harnesses that start ``cardkeep serve`` and need to know where it listens. Atomic."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / PORTS_FILE
    doc = {"host": host, "api": api_port, "pci": pci_port, "pid": os.getpid()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc) + "\n", "utf-8")
    tmp.replace(path)
    return path


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


SWEEPER = "sweeper"


async def _sweep_forever(settings: Settings, runtime: Runtime, stop: asyncio.Event) -> None:
    """The sweeper and recovery loop. A run that completes beats its heartbeat (so ``/health``
    can tell a loop that stopped working); a run that fails is logged and tried again."""
    heartbeats = runtime.services.heartbeats
    heartbeats.register(SWEEPER, settings.sweep_interval)
    while not stop.is_set():
        try:
            report = await run_in_threadpool(runtime.services.sweeper.run_once)
            heartbeats.beat(SWEEPER)
            if report.setup_intents or report.payment_intents or report.recovered_charges:
                log.info(
                    "sweep",
                    setup_intents=report.setup_intents,
                    payment_intents=report.payment_intents,
                    recovered_charges=report.recovered_charges,
                )
            if report.failed_accounts:
                log.error("sweep_failed_for_accounts", accounts=list(report.failed_accounts))
        except Exception as exc:
            log.error("sweep_failed", error_type=type(exc).__name__, exc_info=exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.sweep_interval)


async def _serve(settings: Settings, sockets: list[socket.socket], sweeper: bool) -> None:
    runtime = Runtime.open(settings)
    servers = []
    for app in (runtime.api.app, runtime.pci.app):
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False
        )
        servers.append(_Server(config))
    stop = asyncio.Event()

    def request_stop() -> None:
        stop.set()
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    tasks = [server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)]
    if sweeper:
        tasks.append(_sweep_forever(settings, runtime, stop))
    try:
        await asyncio.gather(*tasks)
    finally:
        runtime.close()


def run_worker(settings: Settings, sockets: list[socket.socket], sweeper: bool) -> None:
    configure(settings.log_level)
    try:
        import uvloop

        uvloop.run(_serve(settings, sockets, sweeper))
    except ImportError:
        asyncio.run(_serve(settings, sockets, sweeper))


def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve the API and PCI apps on ``sockets`` (bound by the caller, API first)."""
    if settings.workers <= 1:
        run_worker(settings, sockets, sweeper=True)
        return
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=run_worker, args=(settings, sockets, i == 0), daemon=False)
        for i in range(settings.workers)
    ]
    for proc in workers:
        proc.start()

    def forward(sig: int, _frame: Any) -> None:
        for proc in workers:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for proc in workers:
        proc.join()
