"""Settings: one `lakehouse.toml` for the whole deployment, overridden by the environment.

Lookup order for the file: `--config FILE`, else `$LAKEHOUSE_CONFIG`, else
`./lakehouse.toml`; a missing default file means "all defaults". Every key is
optional. `LAKEHOUSE_<SECTION>__<KEY>` environment variables override the file.
An unknown key or a wrong type raises `ConfigError` naming the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "LAKEHOUSE_"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class Section(BaseModel):
    """A `[section]` of lakehouse.toml: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GatewayConfig(Section):
    """`[gateway]`: its bind address and the upstreams it proxies to in split mode."""

    bind: str = "127.0.0.1:3110"
    storaged_url: str = "http://127.0.0.1:3211"
    catalogd_url: str = "http://127.0.0.1:3212"
    ingestd_url: str = "http://127.0.0.1:3213"
    queryd_url: str = "http://127.0.0.1:3214"
    vectord_url: str = "http://127.0.0.1:3215"
    embedd_url: str = "http://127.0.0.1:3216"
    chatd_url: str = "http://127.0.0.1:3220"
    proxy_timeout_secs: float = 600.0


class StorageConfig(Section):
    """`[storage]`: where every object lives, shared by every service."""

    backend: Literal["local", "s3"] = "local"
    root: str = "./data"
    bucket: str = "lakehouse"
    endpoint: str = ""
    region: str = "us-east-1"
    secrets: str = "/etc/lakehouse/secrets.toml"
    max_object_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_concurrent: int = Field(default=8, gt=0)


class StoragedConfig(Section):
    """`[storaged]`: the storage service's own port."""

    bind: str = "127.0.0.1:3211"


class CatalogdConfig(Section):
    """`[catalogd]`: the catalog service's own port."""

    bind: str = "127.0.0.1:3212"


class IngestdConfig(Section):
    """`[ingestd]`: CSV ingest limits."""

    bind: str = "127.0.0.1:3213"
    max_upload_bytes: int = Field(default=4 * 1024 * 1024 * 1024, gt=0)
    tmp_dir: str = ""
    # DuckDB's CSV->Parquet conversion: 0 threads means one per core.
    threads: int = Field(default=0, ge=0)
    memory_limit: str = "512MB"
    # Dataset files no manifest references, older than this, are removed at start.
    orphan_grace_secs: float = Field(default=3600.0, ge=0)


class QuerydConfig(Section):
    """`[queryd]`: the DuckDB engine's limits."""

    bind: str = "127.0.0.1:3214"
    timeout_secs: float = Field(default=30.0, gt=0)
    max_rows: int = Field(default=10000, gt=0)
    memory_limit: str = "2GB"
    threads: int = Field(default=2, gt=0)
    workers: int = Field(default=2, gt=0)
    # Fairness: a query running past long_query_secs is long; more workers start (up to
    # max_workers) so short queries do not wait behind long ones. Workers run worker_nice
    # steps below the server (long queries long_query_nice), so HTTP, storage, vectors
    # and short queries keep the CPU under DuckDB load.
    max_workers: int = Field(default=6, gt=0, le=30)
    long_query_secs: float = Field(default=1.0, gt=0)
    worker_nice: int = Field(default=10, ge=0, le=19)
    long_query_nice: int = Field(default=19, ge=0, le=19)


class VectordConfig(Section):
    """`[vectord]`: HNSW parameters and durability cadence."""

    bind: str = "127.0.0.1:3215"
    connectivity: int = Field(default=16, gt=1)
    expansion_add: int = Field(default=128, gt=0)
    expansion_search: int = Field(default=128, gt=0)
    dtype: Literal["f32", "f16", "i8"] = "f32"
    snapshot_every: int = Field(default=10000, gt=0)
    # a snapshot also follows any change within this many seconds, so the log to replay stays short
    snapshot_interval_secs: float = Field(default=60.0, gt=0)
    # the HNSW engine of new float32 indexes (f16 and i8 ones always use usearch)
    engine: Literal["faiss", "hnswlib", "usearch"] = "faiss"
    max_batch: int = Field(default=10000, gt=0)
    sync_interval_secs: float = Field(default=10.0, gt=0)


class EmbeddConfig(Section):
    """`[embedd]`: embedding providers and limits."""

    bind: str = "127.0.0.1:3216"
    ollama_url: str = "http://127.0.0.1:11434"
    default_model: str = "nomic-embed-text"
    timeout_secs: float = Field(default=120.0, gt=0)
    max_texts: int = Field(default=2048, gt=0)
    max_text_chars: int = Field(default=32768, gt=0)
    provider_batch: int = Field(default=64, gt=0)
    concurrency: int = Field(default=4, gt=0)
    openai_url: str = ""
    openai_key_env: str = "OPENAI_API_KEY"
    openai_key_file: str = "/etc/lakehouse/openai.env"
    local_threads: int = Field(default=0, ge=0)


class ChatdConfig(Section):
    """`[chatd]`: chat providers, their URLs and where their keys come from."""

    bind: str = "127.0.0.1:3220"
    ollama_url: str = "http://127.0.0.1:11434"
    timeout_secs: float = Field(default=180.0, gt=0)
    # The whole of one `/v1/ask` question: every round and every tool call.
    ask_timeout_secs: float = Field(default=600.0, gt=0)
    ollama_cloud_url: str = "https://ollama.com"
    ollama_cloud_key_env: str = "OLLAMA_API_KEY"
    ollama_cloud_key_file: str = "/etc/lakehouse/ollama_cloud.env"
    openrouter_url: str = "https://openrouter.ai/api/v1"
    openrouter_key_env: str = "OPENROUTER_API_KEY"
    openrouter_key_file: str = "/etc/lakehouse/openrouter.env"
    opencode_url: str = "https://opencode.ai/zen/v1"
    opencode_key_env: str = "OPENCODE_API_KEY"
    opencode_key_file: str = "/etc/lakehouse/opencode.env"
    kimi_url: str = "https://api.kimi.com/coding/v1"
    kimi_key_env: str = "KIMI_API_KEY"
    kimi_key_file: str = "/etc/lakehouse/kimi.env"


class AuthConfig(Section):
    """`[auth]`: whether requests need a bearer token.

    "auto" (the default) requires one whenever the process listens on an
    address other than loopback (127.0.0.0/8, ::1, localhost).
    """

    required: Literal["auto"] | bool = "auto"


class HttpConfig(Section):
    """`[http]`: limits every process applies to its clients, whichever service it runs."""

    # A JSON (any non-upload) body larger than this is refused while it arrives: 413 too_large.
    max_json_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A request line plus headers larger than this: 431 (or the connection closed).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # A request head not complete, or a body sending nothing, for this long is dropped (408).
    idle_timeout_secs: float = Field(default=30.0, gt=0)
    # Open client connections per process; beyond it new ones are closed at once.
    max_connections: int = Field(default=1000, gt=0)
    # Browser origins allowed to call the API (CORS), e.g. "https://app.example.com"; none by default.
    cors_origins: list[str] = []


class LogConfig(Section):
    """`[log]`: request log level."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(Section):
    """The whole deployment, as read from lakehouse.toml and the environment."""

    gateway: GatewayConfig = GatewayConfig()
    storage: StorageConfig = StorageConfig()
    storaged: StoragedConfig = StoragedConfig()
    catalogd: CatalogdConfig = CatalogdConfig()
    ingestd: IngestdConfig = IngestdConfig()
    queryd: QuerydConfig = QuerydConfig()
    vectord: VectordConfig = VectordConfig()
    embedd: EmbeddConfig = EmbeddConfig()
    chatd: ChatdConfig = ChatdConfig()
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    models: dict[str, str] = Field(default_factory=dict)
    # Where the file was found (None: defaults only). Relative paths in it, such as
    # `[storage] root`, resolve against the working directory, like `make run`'s `./data`.
    source: str | None = Field(default=None, exclude=True)


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file to read, or None when the default one is absent."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("LAKEHOUSE_CONFIG")
    if env:
        return Path(env)
    default = Path("lakehouse.toml")
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the config file and the environment into validated Settings.

    Raises:
        ConfigError: the file is missing or unreadable, or a key is unknown or mistyped.
    """
    found = config_path(path)
    data: dict[str, Any] = {}
    if found is not None:
        try:
            with open(found, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {found} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {found} is not valid TOML: {exc}") from None
    from_env = _apply_env(data, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, found, from_env)) from None
    settings.source = str(found) if found else None
    return settings


def _apply_env(data: dict[str, Any], environ: Any) -> dict[str, str]:
    """Overlay `LAKEHOUSE_<SECTION>__<KEY>` variables onto the parsed file.

    Returns the dotted keys that were set this way, with the variable that set each.
    """
    applied: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if section == "models":
            key = name[len(ENV_PREFIX) :].partition("__")[2]
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value
            applied[f"{section}.{key}"] = name
    return applied


def _describe(exc: ValidationError, found: Path | None, from_env: dict[str, str]) -> str:
    where = f" in {found}" if found else ""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        label = f"'{key}'" + (f" (from ${from_env[key]})" if key in from_env else "")
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {label}")
        else:
            problems.append(f"key {label}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid configuration{where}: " + "; ".join(problems)


def split_bind(bind: str) -> tuple[str, int]:
    """`host:port` into its parts.

    Raises:
        ConfigError: the address has no numeric port.
    """
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"bind address {bind!r} must look like host:port")
    return host or "127.0.0.1", int(port)
