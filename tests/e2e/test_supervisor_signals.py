"""The supervisor forwards SIGHUP (the keyring's reload) to its workers; a worker that is still
starting, before its event loop handles SIGHUP, must not be killed by one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cardkeep.supervisor import Supervisor

    def slow_worker(out: str, index: int, parent_pid: int) -> None:
        time.sleep(1.5)  # still starting when the SIGHUP arrives; no handler of its own
        Path(out, f"alive-{index}").write_text("ok")
        time.sleep(60)

    if __name__ == "__main__":
        Supervisor(slow_worker, [sys.argv[1]], 2).run()
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
        time.sleep(0.5)  # the workers exist but are still importing and sleeping
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
