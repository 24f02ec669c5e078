"""Signing in to a lakehouse that needs tokens: the Token box, the bearer header, sign-out, 401s, scopes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from lakehouse.auth import Scope
from tests.browser.conftest import Lakehouse, Tab, new_tab, start_lakehouse
from tests.fakes.ollama import FakeOllama

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, fake_ollama: FakeOllama) -> Iterator[Lakehouse]:
    """A lakehouse with `[auth] required = true` and a `staff` dataset."""
    root = tmp_path_factory.mktemp("console-auth")
    proc = start_lakehouse(root, fake_ollama, {"auth": {"required": True}})
    try:
        lakehouse = Lakehouse(proc, root, fake_ollama)
        lakehouse.ingest("staff", b"id,name\n1,Ada\n", token=lakehouse.mint("loader", Scope.WRITE))
        yield lakehouse
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def tokens(secured: Lakehouse) -> dict[str, str]:
    """A read and an admin token, once the server knows them.

    A server learns of a new token at its next token refresh, at most a second
    after a miss; the tab must not race that with its first sign-in.
    """
    made = {"read": secured.mint("reader", Scope.READ), "admin": secured.mint("boss", Scope.ADMIN)}
    deadline = time.monotonic() + 30
    for token in made.values():
        headers = {"authorization": f"Bearer {token}"}
        while httpx.get(f"{secured.url}/v1/catalog/datasets", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the server never accepted a new token"
            time.sleep(0.1)
    return made


@pytest.fixture
def signed_out(browser: Any, secured: Lakehouse) -> Iterator[Tab]:
    """A fresh tab on the secured lakehouse (no token yet)."""
    opened = new_tab(browser, secured.url)
    try:
        yield opened
        opened.watch.assert_clean()
    finally:
        opened.context.close()


def sign_in(tab: Tab, token: str) -> None:
    """Open the console, meet the sign-in form, and sign in with `token`."""
    page = tab.open("datasets")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("textbox", name="Token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="staff", exact=True)).to_be_visible()


def test_sign_in_sends_the_token_and_sign_out_clears_it(signed_out: Tab, tokens: dict[str, str]) -> None:
    page = signed_out.open()
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.get_by_role("main")).to_be_hidden()
    # A wrong token is refused, and nothing is kept.
    page.get_by_role("textbox", name="Token", exact=True).fill("lh_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="not valid")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('lakehouse.token')") is None
    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")))
    page.get_by_role("textbox", name="Token", exact=True).fill(tokens["read"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="staff", exact=True)).to_be_visible()
    assert f"Bearer {tokens['read']}" in sent
    assert page.evaluate("sessionStorage.getItem('lakehouse.token')") == tokens["read"]
    signed_out.shot("signed-in")
    # A reload keeps the tab signed in.
    page.reload()
    expect(page.get_by_role("link", name="staff", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('lakehouse.token')") is None


def test_a_401_later_brings_the_sign_in_back(signed_out: Tab, tokens: dict[str, str]) -> None:
    sign_in(signed_out, tokens["read"])
    page = signed_out.page
    # The token stops working (revoked, expired): the next call answers 401.
    page.evaluate("sessionStorage.setItem('lakehouse.token', 'lh_' + 'y'.repeat(43))")
    page.get_by_role("navigation").get_by_role("link", name="SQL").click()  # the page lists datasets
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="Signed out")).to_contain_text("not valid")
    assert page.evaluate("sessionStorage.getItem('lakehouse.token')") is None


def test_deleting_needs_an_admin_token(signed_out: Tab, tokens: dict[str, str], secured: Lakehouse) -> None:
    secured.ingest("scratch", b"id\n1\n", token=tokens["admin"])
    sign_in(signed_out, tokens["read"])
    page = signed_out.page
    page.get_by_role("link", name="scratch", exact=True).click()
    page.get_by_role("button", name="Delete dataset").click()
    page.get_by_role("button", name="Delete scratch for good").click()
    expect(page.get_by_role("alert").filter(has_text="admin")).to_contain_text("needs the 'admin' scope")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("textbox", name="Token", exact=True).fill(tokens["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{secured.url}/#datasets/scratch")
    page.get_by_role("button", name="Delete dataset").click()
    page.get_by_role("button", name="Delete scratch for good").click()
    expect(page).to_have_url(f"{secured.url}/#datasets")
    expect(page.get_by_role("link", name="scratch", exact=True)).to_have_count(0)
