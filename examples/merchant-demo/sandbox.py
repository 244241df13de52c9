"""Start and stop the processes of the demo: a sandbox cardkeep (``cardkeep serve
--sandbox-account``) as a child process, and the demo site under uvicorn in a thread."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Cardkeep:
    proc: subprocess.Popen[bytes]
    api_url: str
    pci_url: str
    key: str
    log_path: Path


def _ports(data_dir: Path, pid: int) -> tuple[str, int, int] | None:
    """(host, API port, PCI port) once the server with ``pid`` wrote ``ports.json``."""
    try:
        doc = json.loads((data_dir / "ports.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("pid") != pid:
        return None  # left by an earlier server
    return str(doc["host"]), int(doc["api"]), int(doc["pci"])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_cardkeep(
    data_dir: Path,
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    api_port: int = 8000,
    pci_port: int = 8001,
    internal_port: int = 8002,
) -> Cardkeep:
    """``cardkeep serve --sandbox-account`` on ``data_dir`` (port 0: a free one), its output in
    ``log_path``; returns once both listeners answer ``/health``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cardkeep", "serve", "--data-dir", str(data_dir)]
    cmd += ["--sandbox-account", "--host", host]
    cmd += ["--api-port", str(api_port), "--pci-port", str(pci_port)]
    cmd += ["--internal-port", str(internal_port)]
    with open(log_path, "ab") as log:
        # The command is this interpreter running cardkeep, with arguments built above.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text("utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"cardkeep exited (status {proc.returncode}):\n{tail}")
        ports = _ports(data_dir, proc.pid)
        if ports is not None:
            bound, api, pci = ports
            api_url, pci_url = f"http://{bound}:{api}", f"http://{bound}:{pci}"
            if _healthy(api_url) and _healthy(pci_url):
                key = (data_dir / "sandbox-key.txt").read_text("utf-8").strip()
                return Cardkeep(proc, api_url, pci_url, key, log_path)
        if time.monotonic() > deadline:
            stop_cardkeep(proc)
            raise RuntimeError(f"cardkeep did not answer /health; see {log_path}")
        time.sleep(0.1)


def stop_cardkeep(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (a clean stop), then SIGKILL if it has not stopped in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ThreadedSite:
    """A Starlette app served by uvicorn in a background thread (uvicorn installs signal handlers
    only in the main thread)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://{host}:{port}"

    def __enter__(self) -> ThreadedSite:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STOP_TIMEOUT)
