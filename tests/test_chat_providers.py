"""Chat providers against fake upstreams that are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.providers.keys import resolve_key


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("KIMI_API_KEY=sk-plain", "sk-plain"),
        ('KIMI_API_KEY="sk-double quoted"', "sk-double quoted"),
        ("KIMI_API_KEY='sk-single'", "sk-single"),
        ("export KIMI_API_KEY=sk-exported", "sk-exported"),
        ("KIMI_API_KEY=sk-commented # the coding plan", "sk-commented"),
        ("# KIMI_API_KEY=sk-disabled", None),
        ("KIMI_API_KEY=", None),
    ],
)
def test_key_from_env_file(tmp_path: Path, line: str, expected: str | None) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text(f"# keys for kimi\nOTHER=1\n\n{line}\n")
    assert resolve_key("KIMI_API_KEY", env_file, environ={}) == expected


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text("KIMI_API_KEY=from-file\n")
    assert resolve_key("KIMI_API_KEY", env_file, environ={"KIMI_API_KEY": "from-env"}) == "from-env"
    assert resolve_key("KIMI_API_KEY", env_file, environ={"KIMI_API_KEY": ""}) == "from-file"


def test_missing_or_unreadable_env_file_means_no_key(tmp_path: Path) -> None:
    assert resolve_key("KIMI_API_KEY", tmp_path / "absent.env", environ={}) is None
    assert resolve_key("KIMI_API_KEY", tmp_path, environ={}) is None
    assert resolve_key("KIMI_API_KEY", "", environ={}) is None
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"\xff\xfe\x00KIMI")
    assert resolve_key("KIMI_API_KEY", binary, environ={}) is None
