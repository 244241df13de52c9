"""What `make run` does on first start and on the next one, without make.

`make run` is `cardkeep serve --data-dir ./var --sandbox-account`: apply migrations, create a sandbox
account the first time (its key kept in <data dir>/sandbox-key.txt, mode 0600), print a banner with
the key to stderr, serve until Ctrl-C. A second start with the same data directory prints the same
key and creates nothing.
"""

from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cardkeep.bootstrap import Runtime
from cardkeep.config import Settings
from tests.e2e.harness import VERSION, free_port

BANNER_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
KEY_MARKER = "sandbox key:"
PORT_TAKEN = "Address already in use"


@dataclass
class Started:
    proc: subprocess.Popen[str]
    reader: threading.Thread
    api_url: str
    pci_url: str
    lines: list[str] = field(default_factory=list)  # stderr so far, kept by the reader thread
    key: str = ""
    earlier: str = ""  # stderr of attempts that lost their port to another process

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _pump(proc: subprocess.Popen[str], lines: list[str], out: queue.Queue[str | None]) -> None:
    """Read stderr to the end (so the server never blocks on a full pipe), line by line."""
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        out.put(line)
    out.put(None)


def _wait_for_key(started: Started, lines: queue.Queue[str | None]) -> str:
    deadline = time.monotonic() + BANNER_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {KEY_MARKER!r} line within {BANNER_TIMEOUT} s:\n{started.stderr}"
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        assert line is not None, f"cardkeep exited before printing its key:\n{started.stderr}"
        if KEY_MARKER in line:
            return line.split(KEY_MARKER, 1)[1].strip()


def _wait_until_serving(started: Started) -> bool:
    """The banner comes before the listeners bind: wait for both to answer /health. False if
    the process died because a port was taken in the meantime (the caller tries other ports)."""
    deadline = time.monotonic() + BANNER_TIMEOUT
    while True:
        if started.proc.poll() is not None:
            started.reader.join(timeout=5)
            if PORT_TAKEN in started.stderr:
                return False
            raise AssertionError(f"cardkeep exited:\n{started.stderr}")
        try:
            if all(
                httpx.get(f"{url}/health", timeout=1).status_code == 200
                for url in (started.api_url, started.pci_url)
            ):
                return True
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"cardkeep did not start serving:\n{started.stderr}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C: SIGINT, then the process must be gone within STOP_TIMEOUT."""
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"cardkeep did not exit within {STOP_TIMEOUT} s of SIGINT "
            f"(waited {time.monotonic() - started:.1f} s)"
        ) from None


def _start(data_dir: Path) -> Started:
    """``cardkeep serve --data-dir DIR --sandbox-account`` on free ports, as `make run` starts it,
    with a thread draining its stderr."""
    api_port, pci_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "cardkeep", "serve", "--data-dir", str(data_dir)]
    cmd += ["--api-port", str(api_port), "--pci-port", str(pci_port), "--internal-port", "0"]
    cmd += ["--sandbox-account"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDKEEP_")}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    lines: list[str] = []
    out: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc, lines, out), daemon=True)
    reader.start()
    started = Started(
        proc, reader, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{pci_port}", lines
    )
    try:
        started.key = _wait_for_key(started, out)
    except BaseException:
        _kill(started)
        raise
    return started


def _kill(started: Started) -> None:
    if started.proc.poll() is None:
        started.proc.kill()
        started.proc.wait()
    started.reader.join(timeout=5)


@contextmanager
def make_run(data_dir: Path) -> Iterator[Started]:
    """A started and serving `make run`. A port taken between choosing it and binding it (other
    tests run in parallel) means another try on other ports; ``earlier`` keeps what it printed."""
    earlier = ""
    for _ in range(3):
        started = _start(data_dir)
        started.earlier = earlier
        try:
            serving = _wait_until_serving(started)
        except BaseException:
            _kill(started)
            raise
        if serving:
            break
        earlier += started.stderr
        _kill(started)
    else:
        raise AssertionError(f"no free ports after 3 tries:\n{earlier}")
    try:
        yield started
    finally:
        _kill(started)


def _banner_says_where(started: Started) -> None:
    assert "cardkeep sandbox" in started.stderr
    assert f"API listener: {started.api_url}" in started.stderr
    assert f"PCI listener: {started.pci_url}" in started.stderr


def _clock(started: Started, key: str) -> httpx.Response:
    return httpx.get(
        f"{started.api_url}/sandbox/clock",
        headers={"Authorization": f"Basic {key}", "version": VERSION},
        timeout=10,
    )


def test_make_run_first_start_creates_and_keeps_a_sandbox_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"  # does not exist yet, as on a fresh clone
    key_file = data_dir / "sandbox-key.txt"

    with make_run(data_dir) as first:
        key = first.key
        assert key.startswith("sk_sandbox_"), first.stderr
        _banner_says_where(first)
        assert "applied migrations" in first.earlier + first.stderr

        r = _clock(first, key)
        assert r.status_code == 200, r.text
        assert r.json()["offsetSeconds"] == 0
        assert _clock(first, key + "x").status_code == 401

        assert key_file.is_file()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text("ascii").strip() == key
        assert _stop(first.proc) == 0, first.stderr

    with make_run(data_dir) as second:
        assert second.key == key, second.stderr
        _banner_says_where(second)
        assert "applied migrations" not in second.earlier + second.stderr
        r = _clock(second, key)
        assert r.status_code == 200, r.text
        assert _stop(second.proc) == 0, second.stderr

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text("ascii").strip() == key
    with Runtime.open(Settings(data_dir=data_dir)) as runtime:
        accounts = runtime.services.accounts.list()
    assert [(a.name, a.mode.value) for a in accounts] == [("sandbox", "sandbox")]
