"""`make test` without Debian's chromium stops before anything else, with one line naming the
package; the browser tests are never skipped silently."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(chromium: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "browser-check", f"CHROMIUM={chromium}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_machine_without_chromium_is_told_in_one_line(tmp_path: Path) -> None:
    missing = _check(str(tmp_path / "chromium"))
    assert missing.returncode != 0
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 2, missing.stderr  # our line, then make's own "Error 1" line
    assert "chromium package" in lines[0]
    assert "apt-get install chromium" in lines[0]
    assert missing.stdout == ""


def test_with_chromium_the_check_passes_quietly() -> None:
    present = _check("/usr/bin/chromium")
    assert present.returncode == 0, present.stderr
    assert present.stderr == ""
