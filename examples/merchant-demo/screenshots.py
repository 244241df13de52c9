"""`make screenshots`: drive the demo through a booking, a card and a no-show charge in Debian's
chromium (headless, through Playwright) and save PNGs of each step.

A throwaway sandbox cardkeep runs in a temporary directory on free ports, the demo on another free
port; both stop at the end. The card is the sandbox's approving test card.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

from app import create_app
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright
from sandbox import ThreadedSite, start_cardkeep, stop_cardkeep

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1000, "height": 800}
MAX_BYTES = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shoot(page: Page, out: Path, name: str) -> Path:
    path = out / name
    page.screenshot(path=str(path), full_page=True)
    size = path.stat().st_size
    print(f"{path} ({size // 1000} kB)", file=sys.stderr)
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes, more than {MAX_BYTES}")
    return path


def walk(page: Page, demo_url: str, out: Path) -> None:
    page.goto(f"{demo_url}/")
    page.fill("#guest-name", "Ada Lovelace")
    page.fill("#party-size", "4")
    shoot(page, out, "1-booking.png")

    page.click("#book")
    page.wait_for_url("**/bookings/*")
    frame = page.frame_locator("#card-frame")
    frame.locator("#card-form").wait_for()
    frame.locator("#name").fill("Ada Lovelace")
    frame.locator("#number").fill("5200 0000 0000 1005")
    frame.locator("#expiry").fill("12/30")
    frame.locator("#cvv").fill("123")
    frame.locator("#consent").check()
    shoot(page, out, "2-card-form.png")

    frame.locator("#submit").click()
    expect(page.locator('#outcome[data-outcome="authorized"]')).to_be_visible()
    expect(page.locator("#si-status")).to_have_text("Authorized")
    shoot(page, out, "3-card-saved.png")

    page.click("#charge")
    page.wait_for_url("**/bookings/*")
    expect(page.locator("#pi-status")).to_have_text("Captured")
    expect(page.locator("#si-status")).to_have_text("Completed")
    shoot(page, out, "4-no-show-charged.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="cardkeep-screenshots-") as tmp:
        data_dir = Path(tmp) / "data"
        cardkeep = start_cardkeep(
            data_dir, Path(tmp) / "cardkeep.log", api_port=0, pci_port=0, internal_port=0
        )
        try:
            app = create_app(cardkeep.api_url, cardkeep.pci_url, cardkeep.key)
            with ThreadedSite(app, "127.0.0.1", free_port()) as site, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                try:
                    page = browser.new_page(viewport=VIEWPORT)
                    walk(page, site.url, out)
                finally:
                    browser.close()
        finally:
            stop_cardkeep(cardkeep.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
