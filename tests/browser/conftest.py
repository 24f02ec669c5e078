"""The web console in a real browser: Debian's Chromium driven by Playwright, a real lakehouse behind it.

One browser per test module; each test gets a fresh browser context (its own
storage), watched for console errors and for any request to a host other than
127.0.0.1 (those are aborted and fail the test). Without /usr/bin/chromium the
tests skip, saying how to install it, except under CI (`CI` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from lakehouse.auth import Scope
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.support.procs import LakehouseProcess, write_config
from tests.support.tokens import mint

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet: the machine has no network, and Chromium's background services would try it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_KEY_FILES = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
NO_KEYS = {name: "" for name in ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Chromium reports every 4xx answer as a console error; the tests provoke those on purpose.
HTTP_STATUS_NOTICE = "Failed to load resource: the server responded with a status of 4"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, for the module (Playwright gives it a fresh profile dir)."""
    if not CHROMIUM.exists():
        message = "the browser tests need Debian's Chromium: run `apt-get install chromium`"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip them)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watch:
    """What a page did that a user should never see: script errors, requests leaving 127.0.0.1."""

    hosts: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname or route.request.url
        self.hosts.add(host)
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    def console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith(HTTP_STATUS_NOTICE):
            self.errors.append(message.text)

    def page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, and every request went to 127.0.0.1."""
        assert self.errors == [], self.errors
        assert self.hosts <= {"127.0.0.1"}, self.hosts


@dataclass
class Tab:
    """A fresh browser context and its page, watched."""

    page: Any
    context: Any
    watch: Watch
    base: str

    def open(self, view: str = "") -> Any:
        """Load the console at `#view` and wait until its heading shows."""
        self.page.goto(f"{self.base}/#{view}" if view else f"{self.base}/")
        return self.page

    def shot(self, name: str) -> None:
        """A screenshot kept as a test artifact (the folder is ignored by git)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def new_tab(browser: Any, base: str, viewport: dict[str, int] = DESKTOP) -> Tab:
    """A fresh context on `base` at `viewport`, its requests and console watched."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(10_000)
    watch = Watch()
    context.route("**/*", watch.route)
    page = context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", watch.page_error)
    return Tab(page, context, watch, base)


@dataclass
class Lakehouse:
    """The lakehouse the browser talks to, and the fake Ollama behind its chat and embeddings."""

    proc: LakehouseProcess
    root: Path
    ollama: FakeOllama

    @property
    def url(self) -> str:
        """The gateway's URL."""
        return self.proc.url

    def api(self, token: str | None = None) -> httpx.Client:
        """An HTTP client on the lakehouse (with `token` as bearer when given)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.proc.client(headers=headers)

    def ingest(self, name: str, csv: bytes, mode: str = "append", token: str | None = None) -> dict[str, Any]:
        """Ingest `csv` into `name` through the API; the answer."""
        with self.api(token) as client:
            answer = client.post(
                f"/v1/ingest/{name}", params={"mode": mode}, content=csv, headers={"Content-Type": "text/csv"}
            )
        assert answer.status_code in (200, 201), answer.text
        body: dict[str, Any] = answer.json()
        return body

    def mint(self, name: str, scope: Scope) -> str:
        """A new token in the lakehouse's store, as `lakehouse token create` makes one."""

        # Playwright's sync API keeps an event loop running on this thread: mint on another one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(mint, self.root / "data", name, scope).result()


@pytest.fixture(scope="session")
def fake_ollama() -> Iterator[FakeOllama]:
    """One fake Ollama for chat and embeddings, for the session."""
    with run_fake_ollama({"nomic-embed-text": 8}) as fake:
        yield fake


def start_lakehouse(
    root: Path, ollama: FakeOllama, extra: dict[str, dict[str, Any]] | None = None
) -> LakehouseProcess:
    """`lakehouse serve` (every service, one process) on port 0, its Ollama the fake."""
    sections: dict[str, dict[str, Any]] = {
        "storage": {"root": str(root / "data")},
        "chatd": {**NO_KEY_FILES, "ollama_url": ollama.url},
        "embedd": {"ollama_url": ollama.url, "default_model": "nomic-embed-text"},
        "queryd": {"max_rows": 250},
    }
    for section, keys in (extra or {}).items():
        sections.setdefault(section, {}).update(keys)
    config = write_config(root / "lakehouse.toml", sections)
    return LakehouseProcess(config, env=NO_KEYS).start()


@pytest.fixture(scope="session")
def lakehouse(tmp_path_factory: pytest.TempPathFactory, fake_ollama: FakeOllama) -> Iterator[Lakehouse]:
    """One lakehouse (auth off, as on loopback) for the browser tests; tests use datasets of their own."""
    root = tmp_path_factory.mktemp("console")
    proc = start_lakehouse(root, fake_ollama)
    try:
        yield Lakehouse(proc, root, fake_ollama)
    finally:
        proc.stop()


@pytest.fixture
def tab(browser: Any, lakehouse: Lakehouse) -> Iterator[Tab]:
    """A fresh desktop-sized tab on the lakehouse; it must end with no errors and no outside request."""
    opened = new_tab(browser, lakehouse.url)
    try:
        yield opened
        opened.watch.assert_clean()
    finally:
        opened.context.close()
