"""Every page of the console renders, stays on 127.0.0.1, survives hostile text and fits a phone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, Lakehouse, Tab, new_tab

HOSTILE = '<img src=x onerror="window.__pwned=1">'
PAGES = {"datasets": "Datasets", "sql": "SQL", "search": "Search", "chat": "Chat", "status": "Status"}

pytestmark = pytest.mark.e2e


def test_every_page_renders_without_errors_or_outside_requests(tab: Tab, lakehouse: Lakehouse) -> None:
    lakehouse.ingest("pages_people", b"id,name\n1,Ada\n2,Bo\n")
    page = tab.open()
    expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="pages_people")).to_be_visible()
    for view, title in PAGES.items():
        page.get_by_role("navigation").get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
        expect(page).to_have_url(f"{lakehouse.url}/#{view}")
        tab.shot(f"desktop-{view}")
    tab.watch.assert_clean()
    assert tab.watch.hosts == {"127.0.0.1"}


def test_status_shows_the_version_and_each_service(tab: Tab) -> None:
    from lakehouse import __version__

    page = tab.open("status")
    expect(page.get_by_role("status").filter(has_text="version")).to_have_text(
        f"gateway ok, version {__version__}"
    )
    for service in ("storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd", "chatd"):
        row = page.get_by_role("row", name=service)
        expect(row.get_by_role("cell").first).to_have_text("up")
    expect(page.get_by_text("lakehouse doctor")).to_be_visible()


def test_a_hostile_dataset_value_renders_as_text(tab: Tab, lakehouse: Lakehouse) -> None:
    lakehouse.ingest("hostile", b'id,bio\n1,"' + HOSTILE.replace('"', '""').encode() + b'"\n')
    page = tab.open("datasets/hostile")
    cell = page.get_by_role("cell", name=HOSTILE)
    expect(cell).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    # The same value through the SQL page.
    page.goto(f"{lakehouse.url}/#sql")
    page.get_by_label("SQL", exact=True).fill("SELECT bio FROM hostile")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_role("cell", name=HOSTILE)).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_a_phone_width_has_a_menu_and_no_sideways_scroll(browser: Any, lakehouse: Lakehouse) -> None:
    wide = ",".join(f"column_{i}" for i in range(30))
    lakehouse.ingest("wide_table", f"{wide}\n{','.join('x' * 12 for _ in range(30))}\n".encode())
    phone = new_tab(browser, lakehouse.url, PHONE)
    try:
        page = phone.open("datasets/wide_table")
        expect(page.get_by_role("cell", name="xxxxxxxxxxxx").first).to_be_visible()
        nav_link = page.get_by_role("navigation").get_by_role("link", name="SQL")
        expect(nav_link).to_be_hidden()
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav_link).to_be_visible()
        for view, title in PAGES.items():
            if not nav_link.is_visible():
                menu.click()
            page.get_by_role("navigation").get_by_role("link", name=title).click()
            expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
            expect(nav_link).to_be_hidden()  # following a link closes the menu
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), view
            phone.shot(f"phone-{view}")
        phone.watch.assert_clean()
    finally:
        phone.context.close()


def test_the_keyboard_reaches_the_menu_and_the_pages(browser: Any, lakehouse: Lakehouse) -> None:
    phone = new_tab(browser, lakehouse.url, PHONE)
    try:
        page = phone.open("sql")
        expect(page.get_by_role("heading", name="SQL", level=1)).to_be_visible()
        page.get_by_role("button", name="Menu").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation").get_by_role("link", name="Datasets")).to_be_focused()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the third link: Search
        expect(page.get_by_role("heading", name="Search", level=1)).to_be_focused()
        phone.watch.assert_clean()
    finally:
        phone.context.close()


def test_controls_carry_the_contracts_accessible_names(tab: Tab, lakehouse: Lakehouse) -> None:
    page = tab.open()
    nav = page.get_by_role("navigation")
    for name in ("Datasets", "SQL", "Search", "Chat"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_label("Upload", exact=True)).to_have_attribute("type", "file")
    nav.get_by_role("link", name="SQL", exact=True).click()
    expect(page.get_by_role("textbox", name="SQL", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Run", exact=True)).to_be_visible()
    nav.get_by_role("link", name="Search", exact=True).click()
    expect(page.get_by_role("combobox", name="Index", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Query", exact=True)).to_be_visible()
    expect(page.get_by_role("combobox", name="Mode", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Filters", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Search", exact=True)).to_be_visible()
    nav.get_by_role("link", name="Chat", exact=True).click()
    expect(page.get_by_role("combobox", name="Model", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    expect(page.get_by_role("switch", name="Ask your data", exact=True)).not_to_be_checked()


def test_colours_follow_the_systems_scheme(browser: Any, lakehouse: Lakehouse) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        try:
            page = context.new_page()
            page.goto(f"{lakehouse.url}/#status")
            expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        finally:
            context.close()
    assert backgrounds == {"light": "rgb(247, 247, 245)", "dark": "rgb(21, 23, 26)"}
