"""Search hits and streamed chat in the browser, against the fake Ollama behind the lakehouse."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Lakehouse, Tab
from tests.fakes.ollama import FakeOllama

PEOPLE = [
    {"id": "ada", "text": "Ada writes compilers in Oslo", "metadata": {"city": "Oslo", "rate": 20}},
    {"id": "bo", "text": "Bo paints murals in Lima", "metadata": {"city": "Lima", "rate": 30}},
    {"id": "cy", "text": "Cy builds bridges in Oslo", "metadata": {"city": "Oslo", "rate": 40}},
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def people_index(lakehouse: Lakehouse) -> None:
    """An index whose items are embedded by the fake Ollama from their texts."""
    with lakehouse.api() as client:
        spec = {"name": "people", "dim": 8, "model": "nomic-embed-text"}
        created = client.post("/v1/vectors/index", json=spec)
        assert created.status_code in (201, 409), created.text
        added = client.post("/v1/vectors/index/people/add", json={"items": PEOPLE})
        assert added.status_code == 200, added.text


@pytest.fixture
def ollama(lakehouse: Lakehouse) -> Iterator[FakeOllama]:
    """The fake Ollama, its behaviours reset after the test."""
    try:
        yield lakehouse.ollama
    finally:
        lakehouse.ollama.reset()


def test_search_shows_hits_with_scores_and_metadata(tab: Tab) -> None:
    page = tab.open("search")
    expect(page.get_by_label("Index")).to_have_value("people")
    page.get_by_label("Query").fill("Bo paints murals in Lima")
    page.get_by_role("button", name="Search").click()
    hits = page.get_by_role("list", name="Hits").get_by_role("listitem")
    expect(hits).to_have_count(3)
    # The item whose text is the query is the best hit (similarity 1), with its metadata.
    expect(hits.first).to_contain_text("bo")
    expect(hits.first).to_contain_text("score 1.0000")
    expect(hits.first.locator("dt")).to_have_text(["city", "rate"])
    expect(hits.first.locator("dd")).to_have_text(["Lima", "30"])
    # Filters narrow the hits to matching metadata.
    page.get_by_label("Filters").fill('{"city": "Oslo", "rate": {"$lt": 25}}')
    page.get_by_role("button", name="Search").click()
    expect(hits).to_have_count(1)
    expect(hits.first).to_contain_text("ada")
    # Filters that are not JSON are refused before anything is sent.
    page.get_by_label("Filters").fill("{city: Oslo}")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("Filters are not JSON")


def test_keyword_and_hybrid_modes(tab: Tab, lakehouse: Lakehouse) -> None:
    with lakehouse.api() as client:
        probe = client.post("/v1/vectors/index/people/search", json={"text": "bridges", "mode": "keyword"})
    if probe.status_code == 400:
        pytest.skip(f"this server has no search modes yet: {probe.json()['error']['message']}")
    page = tab.open("search")
    page.get_by_label("Query").fill("bridges")
    for mode in ("keyword", "hybrid"):
        page.get_by_label("Mode").select_option(mode)
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("list", name="Hits").get_by_role("listitem").first).to_contain_text("cy")


def test_chat_streams_the_answer_in(tab: Tab, ollama: FakeOllama) -> None:
    ollama.reply = "one two three four five six seven eight"
    ollama.chunk_delay = 0.1
    page = tab.open("chat")
    model = page.get_by_label("Model")
    expect(model.locator("option", has_text="llama3.2")).to_have_count(1)
    model.select_option("llama3.2")
    page.get_by_label("Message").fill("count for me")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant .content")
    # Part of the answer shows while the rest is still coming: Stop is live until it ends.
    expect(answer).to_have_text(re.compile(r"^one two"))
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(answer).to_have_text("one two three four five six seven eight")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    assert ollama.requests[-1]["model"] == "llama3.2"
    assert ollama.requests[-1]["messages"][-1]["content"] == "count for me"


def test_stop_ends_a_streaming_answer(tab: Tab, ollama: FakeOllama) -> None:
    ollama.reply = " ".join(f"w{i}" for i in range(40))
    ollama.chunk_delay = 0.2
    page = tab.open("chat")
    page.get_by_label("Model").select_option("llama3.2")
    page.get_by_label("Message").fill("talk a lot")
    page.get_by_label("Message").press("Control+Enter")
    answer = page.locator("article.msg.assistant")
    expect(answer.locator(".content")).to_have_text(re.compile(r"^w0 w1"))
    page.get_by_role("button", name="Stop").click()
    expect(answer).to_contain_text("Stopped.")
    assert "w39" not in answer.inner_text()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_ask_your_data_shows_steps_and_the_answer(tab: Tab, lakehouse: Lakehouse, ollama: FakeOllama) -> None:
    with lakehouse.api() as client:
        probe = client.post("/v1/ask", json={"question": ""})
    if probe.status_code == 404:
        pytest.skip("POST /v1/ask answers 404 on this server: the ask route has not landed yet")
    lakehouse.ingest("ask_people", b"id,name\n1,Ada\n")
    page = tab.open("chat")
    page.get_by_label("Model").select_option("llama3.2")
    page.get_by_role("switch", name="Ask your data").check()
    page.get_by_label("Message").fill("who is in ask_people?")
    page.get_by_role("button", name="Send").click()
    reply = page.locator("article.msg.ask")
    expect(reply.get_by_role("list", name="Steps").get_by_role("listitem").first).to_contain_text("Step 1:")
    expect(reply.locator(".answer")).not_to_be_empty()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert any("tools" in request for request in ollama.requests)


def test_model_output_renders_as_text(tab: Tab, ollama: FakeOllama) -> None:
    hostile = '<img src=x onerror="window.__pwned=1"> **bold**'
    ollama.reply = hostile
    page = tab.open("chat")
    page.get_by_label("Model").select_option("llama3.2")
    page.get_by_label("Message").fill("say something nasty")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant .content")
    expect(answer).to_have_text(hostile)
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
