"""Configuration: defaults, file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.config import ConfigError, load_settings, split_bind


def test_defaults_work_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    settings = load_settings(environ={})
    assert settings.gateway.bind == "127.0.0.1:3110"
    assert settings.storage.backend == "local"
    assert settings.storage.root == "./data"
    assert settings.storage.max_object_bytes == 256 * 1024 * 1024
    assert settings.embedd.default_model == "nomic-embed-text"
    assert settings.source is None


def test_file_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "lh.toml"
    path.write_text('[storage]\nbackend = "s3"\nmax_concurrent = 3\n[models]\nfast = "qwen3:4b"\n')
    settings = load_settings(path, environ={"LAKEHOUSE_STORAGE__MAX_CONCURRENT": "5"})
    assert settings.storage.backend == "s3"
    assert settings.storage.max_concurrent == 5
    assert settings.models == {"fast": "qwen3:4b"}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lh.toml"
    path.write_text("[storage]\nbakend = 's3'\n")
    with pytest.raises(ConfigError, match=r"unknown key 'storage\.bakend'"):
        load_settings(path, environ={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lh.toml"
    path.write_text("[storge]\nroot = 'x'\n")
    with pytest.raises(ConfigError, match="unknown key 'storge'"):
        load_settings(path, environ={})


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lh.toml"
    path.write_text("[queryd]\nmax_rows = 'many'\n")
    with pytest.raises(ConfigError, match=r"key 'queryd\.max_rows'"):
        load_settings(path, environ={})


def test_wrong_type_from_environment_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"key 'storage\.max_object_bytes' \(from \$LAKEHOUSE_STORAGE__MAX"):
        load_settings(None, environ={"LAKEHOUSE_STORAGE__MAX_OBJECT_BYTES": "big"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "lh.toml"
    path.write_text("[storage\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, environ={})


def test_split_bind() -> None:
    assert split_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    with pytest.raises(ConfigError):
        split_bind("localhost")
