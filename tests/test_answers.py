"""How answers are written: Accept headers read by parsing, and JSON rendered fast but byte for byte alike."""

from __future__ import annotations

import pytest

from lakehouse.services.negotiation import wants

ARROW = "application/vnd.apache.arrow.stream"


@pytest.mark.parametrize(
    "accept",
    [
        ARROW,
        f"  {ARROW.upper()} ; q=1 ",
        f"application/json;q=0.9, {ARROW}",
        f"{ARROW}, application/json",  # equal qualities: the named form wins
        f"*/*;q=0.2, {ARROW};q=0.3",
        f"application/*;q=0.5, {ARROW};q=0.5",
        f"{ARROW};charset=x;q=0.7, application/json;q=0.7",
        f"text/html, {ARROW}",
    ],
)
def test_arrow_when_named_at_least_as_high_as_json(accept: str) -> None:
    assert wants(accept, ARROW)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/*",
        "application/json",
        f"{ARROW};q=0",
        f"{ARROW};q=0.0",
        f"{ARROW};q=nonsense",  # an unreadable quality counts as refusal
        f"application/json, {ARROW};q=0.5",
        f"*/*, {ARROW};q=0.9",
        f"{ARROW}x",  # a longer type is another type
        f"x{ARROW}",
        "application/vnd.apache.arrow.file",
        f"text/plain; note={ARROW}",  # a parameter value naming it is not the type
        ";;,,,",
        "a" * 10_000,
    ],
)
def test_json_unless_arrow_is_named_and_preferred(accept: str | None) -> None:
    assert not wants(accept, ARROW)


def test_the_first_listing_of_a_type_counts() -> None:
    assert not wants(f"{ARROW};q=0, {ARROW}", ARROW)


def test_the_fast_json_answer_writes_the_bytes_json_response_writes() -> None:
    from fastapi.responses import JSONResponse

    from lakehouse.services.http import FastJSONResponse

    content = {
        "hits": [
            {"id": "é\u2028x", "score": 0.1 + 0.2, "metadata": {"n": 10**30, "ok": True, "none": None}},
            {"id": "b", "score": -1.5, "metadata": {"list": [1, 2.5, "three", {"deep": []}]}},
        ],
        "empty": {},
    }
    assert bytes(FastJSONResponse(content).body) == bytes(JSONResponse(content).body)
    assert bytes(FastJSONResponse({"score": float("nan")}).body) == b'{"score":null}'
