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

from tests.e2e.browser.parent_site import SHOP_NAME, ParentSite, Shop
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


AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's source, installed by `make test` (npm ci from package-lock.json here)."""
    if not AXE.exists():
        pytest.fail(
            f"axe-core is not installed ({AXE} is missing): run `make axe` "
            "(npm ci --prefix tests/e2e/browser)",
            pytrace=False,
        )
    return AXE.read_text("utf-8")


@pytest.fixture
def shop(sqlite_server: Server) -> Iterator[Shop]:
    """A new sandbox account (with no origins set: the sandbox default) on the page tests'
    server; each test gets its own, so moving its clock touches no other test."""
    s = Shop(sqlite_server, SHOP_NAME)
    yield s
    s.close()


@pytest.fixture
def allowed_site() -> Iterator[ParentSite]:
    """A parent site on 127.0.0.1, an origin the sandbox default allows."""
    with ParentSite("127.0.0.1") as site:
        yield site


@pytest.fixture
def foreign_site() -> Iterator[ParentSite]:
    """A parent site on 127.0.0.2, an origin the sandbox default does not allow."""
    with ParentSite("127.0.0.2") as site:
        yield site
