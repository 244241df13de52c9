"""Browser fixtures: Debian's chromium (never a downloaded browser) driven by Playwright, one
browser per test process and a fresh context per test, plus a SQLite server for the page tests.

Without /usr/bin/chromium the run stops with one line naming the package; the browser tests are
never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.harness import Server, run_server

CHROMIUM = Path("/usr/bin/chromium")
MISSING = (
    "The browser tests need Debian's chromium package at /usr/bin/chromium "
    "(apt-get install chromium)."
)
# Headless as root, with nothing that reaches out to the network on its own.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.exit(MISSING, returncode=1)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server per test process for the page tests (the engine makes no difference to
    the page; the Dojo-flow test runs on both engines through ``server``)."""
    with run_server(tmp_path_factory.mktemp("cardkeep-browser")) as srv:
        yield srv
