"""Object key rules: what is accepted, what is refused, and which keys are reserved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.errors import InvalidKey
from lakehouse.storage.keys import MAX_KEY_BYTES, is_reserved, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    ["a", "a/b/c.parquet", "with space/é/日本", "a.b/..c/c..", "x" * MAX_KEY_BYTES, "%2e%2e/x", "_lakehouse"],
)
def test_valid_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "a//b",
        "a/",
        "../x",
        "a/../b",
        "a/./b",
        ".",
        "..",
        "a\\b",
        "a\x00b",
        "line\nbreak",
        "tab\there",
        "del\x7f",
        "c1\x85",
        "x" * (MAX_KEY_BYTES + 1),
        "é" * 513,  # 1026 bytes in 513 characters
    ],
)
def test_invalid_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_reserved_prefix() -> None:
    assert is_reserved("_lakehouse/catalog/x.json")
    assert is_reserved("_lakehouse")
    assert not is_reserved("_lakehouse2/x")
    assert not is_reserved("data/_lakehouse/x")


@pytest.mark.parametrize(
    "prefix", ["", "logs/20", "logs/", "a/b/", "a", "..", ".", "a/..", "a/.hid", "_lakehouse/"]
)
def test_valid_prefixes(prefix: str) -> None:
    # The last segment may be partial (it only filters by string) or empty after a trailing '/'.
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        "/x",
        "a\\b",
        "a\nb",
        "a\x00",
        "../../../../etc/pass",
        "../",
        "a/../",
        "./x",
        "a/./b",
        "//",
        "a//b",
        "x" * (MAX_KEY_BYTES + 1),
    ],
)
def test_invalid_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)


@given(st.text(max_size=40))
def test_a_valid_prefix_never_names_a_folder_outside_the_store(prefix: str) -> None:
    try:
        validate_prefix(prefix)
    except InvalidKey:
        return
    folders = prefix.split("/")[:-1]
    assert not prefix.startswith("/") and "\\" not in prefix
    assert all(part not in ("", ".", "..") for part in folders)


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x85"), min_size=1
).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=1, max_size=6))
def test_any_key_of_plain_segments_within_the_size_limit_is_valid(segments: list[str]) -> None:
    key = "/".join(segments)
    if len(key.encode()) <= MAX_KEY_BYTES:
        assert validate_key(key) == key
    else:
        with pytest.raises(InvalidKey):
            validate_key(key)


@given(st.text(max_size=40))
def test_validation_never_crashes_and_never_accepts_traversal(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKey:
        return
    parts = key.split("/")
    assert ".." not in parts and "" not in parts and "\\" not in key
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in key)
