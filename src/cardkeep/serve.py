"""Running both listeners: one process (``--workers 1``) or N worker processes sharing two
listening sockets (``supervisor.Supervisor`` restarts a worker that dies; workers die with it),
each worker serving both apps and running the background loops (sweeper and recovery; the webhook
dispatcher), whose work is leased item by item so no item is done twice and none stops with one
worker.

Signals are handled here, once for both servers, so SIGINT/SIGTERM stop everything cleanly.
Both servers speak HTTP/1.1 through ``http_server``'s protocol, which holds the limits on request
heads, the header-read and keep-alive timeouts and the process's connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from cardkeep.bootstrap import Runtime, build_dispatcher
from cardkeep.config import Settings
from cardkeep.http_server import Limits, protocol_class
from cardkeep.logs import configure, get_logger
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.ports import Storage
from cardkeep.supervisor import Supervisor, die_with_parent, parent_alive
from cardkeep.webhooks.dispatcher import TOTAL_TIMEOUT

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


DISPATCHER = "dispatcher"
PRUNE_EVERY = 3600.0  # seconds between prunes of delivered webhooks and their events


async def dispatch_forever(
    settings: Settings,
    storage: Storage,
    stop: asyncio.Event,
    heartbeats: Heartbeats | None = None,
) -> None:
    """The webhook dispatcher's loop (in every ``serve`` process, and alone as ``cardkeep
    webhooks dispatch``): a full batch is followed at once by the next; otherwise it waits
    ``dispatch_interval``. Delivered rows and events older than the retention are pruned now and
    then. A run that fails is logged and tried again."""
    dispatcher = build_dispatcher(settings, storage)
    if heartbeats is not None:  # a run may wait out a receiver's full timeout before it beats
        heartbeats.register(DISPATCHER, settings.dispatch_interval + TOTAL_TIMEOUT)
    loop = asyncio.get_running_loop()
    next_prune = loop.time()
    while not stop.is_set():
        busy = False
        try:
            busy = await dispatcher.run_once() >= dispatcher.batch
            if heartbeats is not None:
                heartbeats.beat(DISPATCHER)
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_EVERY
                pruned = await run_in_threadpool(dispatcher.prune, settings.webhook_retention_days)
                if pruned:
                    log.info("webhooks_pruned", rows=pruned)
        except Exception as exc:
            log.error("dispatch_failed", error_type=type(exc).__name__, exc_info=exc)
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.dispatch_interval)


async def _watch_parent(parent_pid: int, stop: asyncio.Event, request_stop: Any) -> None:
    """A worker whose supervisor is gone stops (in case the kernel's death signal was missed)."""
    while not stop.is_set():
        if not parent_alive(parent_pid):
            log.error("supervisor_gone", parent_pid=parent_pid)
            request_stop()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def _serve(settings: Settings, sockets: list[socket.socket], parent_pid: int | None) -> None:
    runtime = Runtime.open(settings)
    keyring = runtime.pci.vault.keyring
    if settings.keyring is None and not settings.keyring_json:
        log.warning(
            "keyring_beside_data",
            path=str(keyring.path),
            detail="no CARDKEEP_KEYRING configured: the vault's keyring sits beside the data "
            "(sandbox only; a prod account needs a keyring kept elsewhere)",
        )
    limits = Limits(
        header_timeout=settings.header_timeout,
        keep_alive_timeout=settings.keep_alive_timeout,
        max_connections=settings.max_connections,
    )
    protocol = protocol_class(limits)  # one connection budget for both listeners
    servers = []
    for app in (runtime.api.app, runtime.pci.app):
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
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
    loop.add_signal_handler(signal.SIGHUP, keyring.reload)  # the keyring file, read again
    tasks = [server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)]
    tasks.append(_sweep_forever(settings, runtime, stop))
    tasks.append(dispatch_forever(settings, runtime.storage, stop, runtime.services.heartbeats))
    if parent_pid is not None:
        tasks.append(_watch_parent(parent_pid, stop, request_stop))
    try:
        await asyncio.gather(*tasks)
    finally:
        await _flush_audit(runtime)
        runtime.close()


async def _flush_audit(runtime: Runtime) -> None:
    """At shutdown, the refused keys counted in minutes still open go to the audit log too."""
    try:
        await run_in_threadpool(runtime.services.audit.flush_failures, everything=True)
    except Exception as exc:
        log.error("audit_flush_failed", error_type=type(exc).__name__, exc_info=exc)


def run_worker(
    settings: Settings, sockets: list[socket.socket], index: int = 0, parent_pid: int | None = None
) -> None:
    """One worker: both listeners and the background loop. Under a supervisor (``parent_pid``),
    it dies with it."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    configure(settings.log_level)
    try:
        import uvloop

        uvloop.run(_serve(settings, sockets, parent_pid))
    except ImportError:
        asyncio.run(_serve(settings, sockets, parent_pid))


def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve the API and PCI apps on ``sockets`` (bound by the caller, API first)."""
    if settings.workers <= 1:
        run_worker(settings, sockets)
        return
    configure(settings.log_level)
    Supervisor(run_worker, (settings, sockets), settings.workers).run()
