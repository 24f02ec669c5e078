"""lakehouse.example.toml documents every setting, and parses to the defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from lakehouse.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "lakehouse.example.toml"


def documented_keys() -> dict[str, set[str]]:
    """The keys the example sets, by section."""
    data = tomllib.loads(EXAMPLE.read_text())
    return {section: set(keys) for section, keys in data.items() if isinstance(keys, dict)}


def setting_keys() -> list[tuple[str, str]]:
    """Every (section, key) of Settings."""
    pairs = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            pairs.extend((section, key) for key in model.model_fields)
    return pairs


@pytest.mark.parametrize(("section", "key"), setting_keys())
def test_every_setting_is_in_the_example(section: str, key: str) -> None:
    assert key in documented_keys().get(section, set()), (
        f"[{section}] {key} is a setting but lakehouse.example.toml does not document it"
    )


def test_every_section_is_in_the_example() -> None:
    sections = {name for name in Settings.model_fields if name != "source"}
    assert sections <= set(documented_keys()), sections - set(documented_keys())


def test_every_key_has_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if line and not line.startswith(("#", "[")) and "=" in line]
    for i in keys:
        # A comment on the line, above it, or above the run of related keys it belongs to.
        j = i
        while j > 0 and lines[j - 1] and not lines[j - 1].startswith(("#", "[")):
            j -= 1
        commented = "#" in lines[i] or (j > 0 and lines[j - 1].startswith("#"))
        assert commented, f"line {i + 1} of the example has no comment: {lines[i]!r}"


def test_the_example_parses_to_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}).model_dump() == Settings().model_dump()
