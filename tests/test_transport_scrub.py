"""Upstream error text never carries the provider key, in any encoding, nor echoed credentials."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.providers.transport import Upstream

KEY = "sk-live/abc+123=="


@pytest.mark.parametrize(
    "echoed",
    [
        KEY,
        quote(KEY, safe=""),
        quote_plus(KEY),
        base64.b64encode(KEY.encode()).decode(),
        base64.b64encode(KEY.encode()).decode().rstrip("="),
        base64.b64encode(f":{KEY}".encode()).decode(),
    ],
    ids=["plain", "url-encoded", "form-encoded", "base64", "base64-unpadded", "basic-auth"],
)
def test_the_key_is_scrubbed_in_every_form(echoed: str) -> None:
    upstream = Upstream("kimi", "https://api.example", secret=KEY)
    text = upstream.scrub(f"Incorrect API key provided: {echoed}. Check it.")
    assert echoed not in text and KEY not in text
    assert "***" in text


@pytest.mark.parametrize(
    "echoed",
    [
        "Authorization: Bearer tok-999",
        '{"headers": {"Authorization": "Bearer tok-999"}}',
        "authorization=Basic dG9rLTk5OQ==",
        "got bearer tok-999 which is unknown",
    ],
)
def test_echoed_credentials_are_scrubbed_even_when_they_are_not_the_key(echoed: str) -> None:
    text = Upstream("openrouter", "https://api.example").scrub(echoed)
    assert "tok-999" not in text and "dG9rLTk5OQ" not in text


@given(
    st.text(min_size=8, max_size=40).filter(lambda k: k.strip() == k and " " not in k), st.text(max_size=60)
)
def test_a_plain_key_never_survives(key: str, noise: str) -> None:
    text = Upstream("p", "https://x", secret=key).scrub(f"{noise}{key}{noise}")
    assert key not in text
