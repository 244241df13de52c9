"""The README's walkthrough, run exactly as written against a real server.

Every ```sh block under ``## Walkthrough`` is concatenated in order and run with
``bash -euo pipefail``, with only KEY, API and PCI set, as a reader would paste them. A command that
stops working fails this test; so does output that no longer says what the README promises.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import APPROVED_CARD, VERSION, http_client, run_server

README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH = "## Walkthrough"
MASKED_CARD = "520000******1005"


@dataclass(frozen=True)
class Block:
    section: str  # the level-2 heading the block sits under ("" before the first one)
    lang: str
    code: str


def code_blocks(markdown: str) -> list[Block]:
    """Fenced code blocks with the ``## `` section each belongs to; headings inside fences
    (shell comments such as ``## x``) do not count."""
    blocks: list[Block] = []
    section = ""
    fence: str | None = None
    lang = ""
    body: list[str] = []
    for line in markdown.splitlines():
        if fence is None:
            opening = re.match(r"^(`{3,})\s*([\w+-]*)", line)
            if opening:
                fence, lang, body = opening.group(1), opening.group(2), []
            elif line.startswith("## ") or line.startswith("# "):
                section = line.rstrip()
        elif line.strip() == fence:
            blocks.append(Block(section, lang, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    assert fence is None, "README.md has an unclosed code fence"
    return blocks


def walkthrough_script() -> str:
    text = README.read_text("utf-8")
    headings = [line.rstrip() for line in text.splitlines() if line.startswith("## ")]
    assert headings.count(WALKTHROUGH) == 1, f"README.md needs exactly one {WALKTHROUGH!r} heading"
    blocks = [b.code for b in code_blocks(text) if b.section == WALKTHROUGH and b.lang == "sh"]
    assert len(blocks) >= 5, f"expected the walkthrough's sh blocks, found {len(blocks)}"
    return "\n".join(blocks)


def in_order(lines: list[str], wanted: list[str]) -> list[str]:
    """The items of ``wanted`` that do not appear, in this order, as whole lines of ``lines``."""
    missing: list[str] = []
    at = 0
    for w in wanted:
        try:
            at = lines.index(w, at) + 1
        except ValueError:
            missing.append(w)
    return missing


def bin_dir(tmp_path: Path) -> Path:
    """A PATH entry with ``python3`` (this interpreter) and a ``jq`` that fails: the README
    promises curl and python3 only, since a fresh machine may have no jq."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    jq = bindir / "jq"
    jq.write_text("#!/bin/sh\necho 'the README walkthrough must not need jq' >&2\nexit 127\n")
    jq.chmod(jq.stat().st_mode | stat.S_IXUSR)
    return bindir


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the README walkthrough needs bash and curl")
    script = tmp_path / "walkthrough.sh"
    script.write_text(walkthrough_script(), "utf-8")
    workdir = tmp_path / "work"  # no var/sandbox-key.txt here: KEY must come from the env
    workdir.mkdir()

    with run_server(tmp_path / "server") as server:
        key = server.create_account("readme")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDKEEP_")}
        env.update(
            KEY=key,
            API=server.api_url,
            PCI=server.pci_url,
            PATH=f"{bin_dir(tmp_path)}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        run = subprocess.run(
            ["bash", "-euo", "pipefail", str(script)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = (
            f"exit {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}\n"
            f"--- server log\n{server.log_text()[-4000:]}"
        )
        assert run.returncode == 0, report
        assert run.stderr == "", report
        lines = [line.strip() for line in run.stdout.splitlines()]

        # The flow, in order: card authorized and shown masked, charged once, intent used up,
        # a second charge refused.
        missing = in_order(
            lines,
            [
                '{"status":"ok"}',
                "Authorized",
                MASKED_CARD,
                "Created",
                "Successful",
                "Captured",
                "Completed",
                "400",
                "invalid_state",
            ],
        )
        assert not missing, f"the walkthrough did not print {missing}\n{report}"
        # The rest of the section: a declined charge, cancel, and close.
        missing = in_order(
            lines[lines.index("invalid_state") + 1 :],
            ["Declined", "Insufficient funds", "Authorized", "Created", "Canceled", "Closed"],
        )
        assert not missing, f"the walkthrough did not print {missing}\n{report}"
        assert not any(APPROVED_CARD in line for line in lines), "the full card number came back"

        # What it printed is what the server holds.
        si_id = next(line[3:] for line in lines if line.startswith("SI="))
        pi_id = next(line[3:] for line in lines if line.startswith("PI="))
        assert si_id.startswith("si_sandbox_"), report
        assert pi_id.startswith("pi_sandbox_"), report
        charge = next(json.loads(line) for line in lines if line.startswith('{"paymentIntentId"'))
        assert charge == {"paymentIntentId": pi_id, "status": "Successful", "message": "DEPOSITED"}

        headers = {"Authorization": f"Basic {key}", "version": VERSION}
        with http_client(server.api_url, headers, timeout=10) as api:
            si = api.get(f"/setup-intents/{si_id}").json()
            assert si["status"] == "Completed"
            assert si["paymentDetails"]["card"]["cardNumber"] == MASKED_CARD
            pi = api.get(f"/payment-intents/{pi_id}").json()
            assert pi["status"] == "Captured"
            assert pi["setupIntentId"] == si_id
            assert [e["eventType"] for e in pi["paymentEvents"]] == ["Captured"]
            again = api.post(f"/payment-intents/{pi_id}/charge")
            assert again.status_code == 400
            assert again.json()["code"] == "invalid_state"


def test_readme_other_shell_blocks_parse() -> None:
    """The sh blocks outside the walkthrough (quick start, sandbox clock) are not run, but they
    must at least be valid shell."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    others = [b for b in code_blocks(README.read_text("utf-8")) if b.section != WALKTHROUGH]
    shell = [b for b in others if b.lang == "sh"]
    assert shell, "expected sh blocks outside the walkthrough (quick start, sandbox clock)"
    for block in shell:
        check = subprocess.run(
            ["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"{block.section}:\n{block.code}\n{check.stderr}"


def test_code_blocks_parser() -> None:
    text = (
        "# t\n\n## A\n\n```sh\necho a\n## not a heading\n```\n\n"
        "### sub\n\n```sh\necho b\n```\n\n```text\nx\n```\n\n## B\n\n```sh\necho c\n```\n"
    )
    assert code_blocks(text) == [
        Block("## A", "sh", "echo a\n## not a heading\n"),
        Block("## A", "sh", "echo b\n"),
        Block("## A", "text", "x\n"),
        Block("## B", "sh", "echo c\n"),
    ]
    assert in_order(["a", "b", "c"], ["a", "c"]) == []
    assert in_order(["a", "b", "c"], ["c", "a"]) == ["a"]
    assert in_order(["a", "b", "c"], ["a", "x", "c"]) == ["x"]
