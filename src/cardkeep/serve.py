"""The process model of ``serve`` (DESIGN.md): a supervisor (``supervisor.Supervisor``, which
restarts a process that dies; its processes die with it) runs

- one **PCI process**, the only one that loads key material: the public PCI listener and the
  internal listener (``cde.internal``), over its vault, acquirer and charger;
- N **API workers** sharing the API listener's socket, each built from settings without any key
  and started without the key variables in its environment; they charge, re-send, refund and
  reverse through the internal listener (``hop.client``).

``--listener api`` / ``--listener pci`` run one side each (split deployments). Every process runs
the background loops (sweeper and recovery; the webhook dispatcher), whose work is leased item by
item so no item is done twice and none stops with one process.

Signals are handled here, once for a process's servers, so SIGINT/SIGTERM stop everything cleanly.
Every server speaks HTTP/1.1 through ``http_server``'s protocol, which holds the limits on request
heads, the header-read and keep-alive timeouts and the process's connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import signal
import socket
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from cardkeep.bootstrap import Served, api_process, build_dispatcher, pci_process
from cardkeep.cde.keys import KEYRING_FILE
from cardkeep.config import KEY_ENV, Settings
from cardkeep.http_server import Limits, protocol_class
from cardkeep.logs import configure, get_logger
from cardkeep.service.facade import Services
from cardkeep.service.heartbeat import Heartbeats
from cardkeep.service.ports import Storage
from cardkeep.supervisor import Role, Supervisor, die_with_parent, name_process, parent_alive
from cardkeep.webhooks.dispatcher import TOTAL_TIMEOUT

log = get_logger("cardkeep.serve")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # ``run_worker`` handles signals for both servers


PORTS_FILE = "ports.json"


def write_ports(
    data_dir: Path,
    host: str,
    *,
    api_port: int | None,
    pci_port: int | None,
    internal_port: int | None,
) -> Path:
    """``<data dir>/ports.json``: the ports actually bound (``--api-port 0`` picks a free one;
    None for a side this deployment does not run), for harnesses that start ``cardkeep serve``
    and need to know where it listens. Atomic."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / PORTS_FILE
    doc = {
        "host": host,
        "api": api_port,
        "pci": pci_port,
        "internal": internal_port,
        "pid": os.getpid(),
    }
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


async def _sweep_forever(settings: Settings, services: Services, stop: asyncio.Event) -> None:
    """The sweeper and recovery loop. A run that completes beats its heartbeat (so ``/health``
    can tell a loop that stopped working); a run that fails is logged and tried again."""
    heartbeats = services.heartbeats
    heartbeats.register(SWEEPER, settings.sweep_interval)
    while not stop.is_set():
        try:
            report = await run_in_threadpool(services.sweeper.run_once)
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


async def _serve(
    settings: Settings,
    served: Served,
    sockets: Sequence[socket.socket],
    parent_pid: int | None,
    stop_on: Sequence[signal.Signals],
) -> None:
    limits = Limits(
        header_timeout=settings.header_timeout,
        keep_alive_timeout=settings.keep_alive_timeout,
        max_connections=settings.max_connections,
    )
    protocol = protocol_class(limits)  # one connection budget for the process's listeners
    servers = []
    for i, app in enumerate(served.apps):
        tls = served.tls[i] if i < len(served.tls) else None
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            ssl_certfile=None if tls is None else str(tls[0]),
            ssl_keyfile=None if tls is None else str(tls[1]),
        )
        servers.append(_Server(config))
    stop = asyncio.Event()

    def request_stop() -> None:
        stop.set()
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in stop_on:
        loop.add_signal_handler(sig, request_stop)
    if served.reload is not None:
        loop.add_signal_handler(signal.SIGHUP, served.reload)  # the keyring file, read again
    else:  # an API worker holds no keyring: SIGHUP (sent to every process) changes nothing
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tasks = [server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)]
    tasks.append(_sweep_forever(settings, served.services, stop))
    tasks.append(dispatch_forever(settings, served.storage, stop, served.services.heartbeats))
    if parent_pid is not None:
        tasks.append(_watch_parent(parent_pid, stop, request_stop))
    try:
        await asyncio.gather(*tasks)
    finally:
        await _flush_audit(served.services)
        served.close()


async def _flush_audit(services: Services) -> None:
    """At shutdown, the refused keys counted in minutes still open go to the audit log too."""
    try:
        await run_in_threadpool(services.audit.flush_failures, everything=True)
    except Exception as exc:
        log.error("audit_flush_failed", error_type=type(exc).__name__, exc_info=exc)


PCI_NAME = "cardkeep-pci"
API_NAME = "cardkeep-api"


def _run(
    name: str,
    build: Callable[[], Served],
    settings: Settings,
    sockets: Sequence[socket.socket],
    parent_pid: int | None,
    stop_on: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    name_process(name)
    if signal.SIGINT not in stop_on:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure(settings.log_level)

    served = build()
    runner: Callable[..., None] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    runner(_serve(settings, served, sockets, parent_pid, stop_on))


def run_pci_process(
    settings: Settings,
    pci: socket.socket,
    internal: socket.socket,
    secret: str,
    index: int = 0,
    parent_pid: int | None = None,
) -> None:
    """The PCI process: the PCI listener and the internal listener, with the vault's keys."""
    if settings.keyring_beside_data:
        log.warning(
            "keyring_beside_data",
            path=str(settings.data_dir / KEYRING_FILE),
            detail="no CARDKEEP_KEYRING configured: the vault's keyring sits beside the data "
            "(sandbox only; a prod account needs a keyring kept elsewhere)",
        )
    if hop_in_clear_beyond_host(settings):
        log.warning(
            "internal_hop_unencrypted",
            host=settings.internal_host,
            detail="the internal listener serves plain HTTP beyond this host: set "
            "CARDKEEP_INTERNAL_TLS_CERT and CARDKEEP_INTERNAL_TLS_KEY, or keep it on a private "
            "network",
        )
    build = functools.partial(pci_process, settings, secret)
    # SIGTERM only: the supervisor stops it after the API workers (``Role.last``).
    _run(PCI_NAME, build, settings, [pci, internal], parent_pid, (signal.SIGTERM,))


def hop_in_clear_beyond_host(settings: Settings) -> bool:
    """The internal listener would serve plain HTTP on an interface other hosts can reach."""
    if settings.internal_tls_cert is not None or settings.internal_host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(settings.internal_host).is_loopback
    except ValueError:
        return True  # a host name: not known to be this host only


def run_api_worker(
    settings: Settings,
    api: socket.socket,
    url: str,
    secret: str,
    index: int = 0,
    parent_pid: int | None = None,
) -> None:
    """An API worker: the API listener, charging through the PCI process at ``url``; it is given
    no key and no path to one (``roles`` passes ``Settings.without_keys``, ``api_process`` builds
    from it again, and the supervisor hides the key variables)."""
    build = functools.partial(api_process, settings, url, secret)
    _run(API_NAME, build, settings, [api], parent_pid)


@dataclass(frozen=True)
class Listeners:
    """The sockets ``serve`` bound: each side's, or None when this deployment runs the other."""

    api: socket.socket | None
    pci: socket.socket | None
    internal: socket.socket | None


def roles(settings: Settings, listeners: Listeners, secret: str, url: str) -> list[Role]:
    """The processes of ``serve``: one PCI process (stopped last, so API workers finish their
    charges through it) and ``settings.workers`` API workers, as the listeners bound say."""
    found: list[Role] = []
    if listeners.pci is not None:
        assert listeners.internal is not None
        pci = (settings, listeners.pci, listeners.internal, secret)
        found.append(Role("pci", run_pci_process, pci, last=True))
    if listeners.api is not None:
        api = (settings.without_keys(), listeners.api, url, secret)
        role = Role("api", run_api_worker, api, hide_env=KEY_ENV)
        found += [role] * settings.workers
    return found


def serve(settings: Settings, listeners: Listeners, secret: str, url: str) -> None:
    """Supervise the processes of ``roles`` until SIGINT or SIGTERM."""
    configure(settings.log_level)
    Supervisor(roles(settings, listeners, secret, url)).run()
