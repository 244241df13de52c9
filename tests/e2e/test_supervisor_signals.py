"""The supervisor forwards SIGHUP (the keyring's reload) to its workers; a worker that is still
starting, before its event loop handles SIGHUP, must not be killed by one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.e2e.harness import workers_of

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cardkeep.supervisor import Role, Supervisor

    def slow_worker(out: str, index: int, parent_pid: int) -> None:
        time.sleep(1.5)  # still starting when the SIGHUP arrives; no handler of its own
        Path(out, f"alive-{index}").write_text("ok")
        time.sleep(60)

    if __name__ == "__main__":
        Supervisor([Role("w", slow_worker, (sys.argv[1],))] * 2).run()
    """
)


def test_a_sighup_while_workers_start_kills_none(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    log = tmp_path / "supervisor.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            cwd=tmp_path,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while len(workers_of(proc.pid)) < 2:  # the supervisor has started both
            assert proc.poll() is None, "the supervisor died"
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.02)
        assert not list(tmp_path.glob("alive-*"))  # still starting
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while len(list(tmp_path.glob("alive-*"))) < 2:
            assert proc.poll() is None, "the supervisor died"
            assert time.monotonic() < deadline, "a worker never came up (killed by SIGHUP?)"
            time.sleep(0.1)
        assert sorted(p.name for p in tmp_path.glob("alive-*")) == ["alive-0", "alive-1"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    # No worker was killed by the signal (exit code -1) and restarted; the end's SIGTERM is -15.
    assert f"exitcode=-{int(signal.SIGHUP)} " not in log.read_text(), log.read_text()


ORDERED = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from cardkeep.supervisor import Role, Supervisor

    def worker(out: str, name: str, index: int, parent_pid: int) -> None:
        def stop(signum, frame):
            time.sleep(1.0 if name == "api" else 0)  # finishing its requests
            Path(out, f"{name}-{index}-stopped").write_text(f"{time.time()} {signum}")
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop if name == "api" else signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        Path(out, f"{name}-{index}-up").write_text("ok")
        while True:
            time.sleep(0.1)

    if __name__ == "__main__":
        out = sys.argv[1]
        Supervisor([
            Role("pci", worker, (out, "pci"), last=True),
            Role("api", worker, (out, "api")),
            Role("api", worker, (out, "api")),
        ]).run()
    """
)


def test_the_last_role_is_stopped_after_the_others_have_exited(tmp_path: Path) -> None:
    """SIGINT to the supervisor: the API workers stop (and take their time), then the PCI
    process gets SIGTERM, so a charge in flight through it can finish."""
    script = tmp_path / "run.py"
    script.write_text(ORDERED)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while len(list(tmp_path.glob("*-up"))) < 3:
            assert proc.poll() is None, "the supervisor died"
            assert time.monotonic() < deadline, "the processes never came up"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = {p.name: p.read_text().split() for p in tmp_path.glob("*-stopped")}
    assert sorted(stopped) == ["api-0-stopped", "api-1-stopped", "pci-0-stopped"]
    last_api = max(float(stopped[f"api-{i}-stopped"][0]) for i in (0, 1))
    pci_at, pci_signal = float(stopped["pci-0-stopped"][0]), int(stopped["pci-0-stopped"][1])
    assert pci_at >= last_api
    assert pci_signal == signal.SIGTERM
