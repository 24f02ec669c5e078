"""Cold-start checks behind `lakehouse doctor`: each a plain function returning results.

A failing required check makes the machine unfit to serve; an optional one
(Ollama, provider keys, the ports of services run apart) only warns. Every
result that is not ok carries the exact command that fixes it. No check
downloads anything, and none prints a key.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import shlex
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from packaging.requirements import InvalidRequirement, Requirement

from lakehouse.config import ConfigError, Settings, load_settings, split_bind
from lakehouse.errors import LakehouseError
from lakehouse.providers.keys import resolve_key
from lakehouse.providers.routing import resolve
from lakehouse.services.table import SERVICES

Status = Literal["ok", "warn", "fail"]
MIN_PYTHON = (3, 11)
PROBE_PREFIX = "_lakehouse/doctor/"
STORAGE_TIMEOUT = 15.0
HTTP_TIMEOUT = 3.0
# How long a port's listener has to answer `GET /health` before it is taken for a stranger.
HEALTH_TIMEOUT = 1.5
# Extras for working on the lakehouse itself, not for running it: never reported.
DEVELOPER_EXTRAS = frozenset({"dev", "test", "docs"})
# chatd providers whose key comes from `<provider>_key_env` / `<provider>_key_file`.
KEYED_PROVIDERS = ("ollama_cloud", "openrouter", "opencode", "kimi")


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: what was checked, what was found, and the command that fixes it."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return asdict(self)


def ok(name: str, detail: str, *, required: bool = True) -> CheckResult:
    """A passing check."""
    return CheckResult(name, "ok", detail, None, required)


def problem(name: str, detail: str, fix: str, *, required: bool = True) -> CheckResult:
    """A failing check (a warning when not required)."""
    return CheckResult(name, "fail" if required else "warn", detail, fix, required)


def pip_install(*specs: str) -> str:
    """The pip command that installs `specs` into this interpreter's environment."""
    return f"{shlex.quote(sys.executable)} -m pip install " + " ".join(shlex.quote(s) for s in specs)


def check_config(path: str | None) -> tuple[CheckResult, Settings | None]:
    """The configuration file parses and every key is known and well typed."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        return problem("config", str(exc), "edit the file to fix the key named above"), None
    where = settings.source or "defaults (no lakehouse.toml found)"
    return ok("config", f"configuration from {where}"), settings


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> CheckResult:
    """The interpreter is recent enough."""
    shown = ".".join(str(p) for p in version)
    if version[:2] >= MIN_PYTHON:
        return ok("python", f"Python {shown}")
    need = ".".join(str(p) for p in MIN_PYTHON)
    return problem(
        "python", f"Python {shown} is older than {need}", f"apt-get install python{need} python{need}-venv"
    )


def _missing(requirements: list[Requirement]) -> list[str]:
    """The requirements not installed, or installed at a version outside their specifier."""
    missing = []
    for req in requirements:
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (found {version})")
    return missing


def check_packages(dist: str = "lakehouse") -> list[CheckResult]:
    """The runtime dependencies are installed (required); each optional extra is complete (warns)."""
    try:
        declared = importlib.metadata.requires(dist) or []
        known_extras = importlib.metadata.metadata(dist).get_all("Provides-Extra") or []
    except importlib.metadata.PackageNotFoundError:
        return [problem("packages", f"the {dist} package is not installed", pip_install("-e", "."))]
    runtime: list[Requirement] = []
    extras: dict[str, list[Requirement]] = {}
    for line in declared:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        extra = _extra_of(req, known_extras)
        if extra is None:
            runtime.append(req)
        else:
            req.marker = None
            extras.setdefault(extra, []).append(req)
    results = []
    missing = _missing(runtime)
    if missing:
        specs = [m.split(" (found")[0] for m in missing]
        results.append(
            problem("packages", "missing or wrong version: " + ", ".join(missing), pip_install(*specs))
        )
    else:
        results.append(ok("packages", f"{len(runtime)} runtime dependencies installed"))
    for extra, reqs in sorted(extras.items()):
        if extra in DEVELOPER_EXTRAS:
            continue
        absent = _missing(reqs)
        name = f"extra:{extra}"
        if absent:
            specs = [m.split(" (found")[0] for m in absent]
            detail = f"optional extra '{extra}' incomplete: " + ", ".join(absent)
            results.append(problem(name, detail, pip_install(*specs), required=False))
        else:
            results.append(ok(name, f"optional extra '{extra}' installed", required=False))
    return results


def _extra_of(req: Requirement, extras: list[str]) -> str | None:
    """The extra a requirement belongs to (its marker holds only with that extra), or None."""
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        return None
    return next((extra for extra in extras if req.marker.evaluate({"extra": extra})), None)


def check_httpfs() -> CheckResult:
    """The httpfs extension file shipped in `duckdb-extension-httpfs` exists and DuckDB loads it."""
    import duckdb

    from lakehouse.query.sandbox import httpfs_path

    fix = pip_install(f"duckdb-extension-httpfs=={duckdb.__version__}")
    try:
        path = httpfs_path()
    except (RuntimeError, ModuleNotFoundError) as exc:
        return problem("duckdb_httpfs", str(exc), fix)
    conn = duckdb.connect(
        ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    try:
        conn.execute("LOAD " + "'" + str(path).replace("'", "''") + "'")
    except duckdb.Error as exc:
        return problem("duckdb_httpfs", f"{path} does not load: {exc}", fix)
    finally:
        conn.close()
    return ok("duckdb_httpfs", f"httpfs loads from {path}")


def check_storage(settings: Settings) -> list[CheckResult]:
    """The storage backend is usable: the folder writable, or the S3 secrets and bucket."""
    cfg = settings.storage
    results: list[CheckResult] = []
    if cfg.backend == "s3":
        secrets = check_s3_secrets(settings)
        results.append(secrets)
        if secrets.status == "fail":
            return results
    results.append(asyncio.run(_probe_store(settings)))
    return results


def check_s3_secrets(settings: Settings) -> CheckResult:
    """With S3, the secrets file is readable and complete, or AWS credentials are in the environment."""
    import os

    from lakehouse.storage.s3 import resolve_credentials

    cfg = settings.storage
    example = '[s3.primary]\\naccess_key_id = "..."\\nsecret_access_key = "..."\\n'
    fix = f"printf '{example}' > {shlex.quote(cfg.secrets)} && chmod 600 {shlex.quote(cfg.secrets)}"
    path = Path(cfg.secrets).expanduser()
    if path.exists() and not path.is_file():
        return problem("s3_secrets", f"secrets path {path} is not a file", fix)
    if path.is_file() and not os.access(path, os.R_OK):
        return problem(
            "s3_secrets", f"secrets file {path} is not readable", f"chmod 600 {shlex.quote(str(path))}"
        )
    try:
        creds = resolve_credentials(cfg)
    except ConfigError as exc:
        return problem("s3_secrets", str(exc), fix)
    if path.is_file():
        return ok("s3_secrets", f"credentials from {path}")
    if creds.access_key_id and creds.secret_access_key:
        return ok("s3_secrets", f"no secrets file at {path}; credentials from AWS_* environment variables")
    return problem(
        "s3_secrets",
        f"no secrets file at {path} and no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment",
        fix,
    )


async def _probe_store(settings: Settings) -> CheckResult:
    """Write, read back and delete one small object through the configured ObjectStore."""
    from lakehouse.storage import open_store

    cfg = settings.storage
    if cfg.backend == "s3":
        where = f"bucket {cfg.bucket!r} at {cfg.endpoint or 'AWS S3'}"
        fix = (
            f"aws s3 mb s3://{cfg.bucket}"
            + (f" --endpoint-url {cfg.endpoint}" if cfg.endpoint else "")
            + "  # and check [storage] endpoint, region and the credentials"
        )
    else:
        where = f"folder {cfg.root}"
        fix = f"mkdir -p {shlex.quote(cfg.root)} && chmod u+rwx {shlex.quote(cfg.root)}"
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        store = open_store(settings)
    except (ConfigError, LakehouseError, OSError) as exc:
        return problem("storage", f"{where} cannot be opened: {_first_line(exc)}", fix)
    try:
        async with asyncio.timeout(STORAGE_TIMEOUT):
            check = getattr(store, "check", None)
            if check is not None:
                await check()
            await store.put_bytes(key, b"lakehouse doctor probe")
            if await store.get_bytes(key) != b"lakehouse doctor probe":
                return problem("storage", f"{where} returned different bytes than written", fix)
            await store.delete(key)
    except TimeoutError:
        return problem("storage", f"{where} did not answer within {STORAGE_TIMEOUT:.0f}s", fix)
    except Exception as exc:  # any backend failure (OS, HTTP, S3 client) means "not usable"
        return problem("storage", f"{where} is not writable: {_first_line(exc)}", fix)
    finally:
        await store.close()
    return ok("storage", f"{where} is writable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]


def check_ollama(settings: Settings) -> list[CheckResult]:
    """Ollama answers at `[embedd] ollama_url` and the default embed model is pulled (optional)."""
    url = settings.embedd.ollama_url.rstrip("/")
    model = settings.embedd.default_model
    route = resolve(model, settings.models)
    try:
        response = httpx.get(f"{url}/api/tags", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        tags = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        fix = "ollama serve  # or set [embedd] ollama_url to where Ollama listens"
        return [problem("ollama", f"Ollama not reachable at {url}: {_first_line(exc)}", fix, required=False)]
    results = [ok("ollama", f"Ollama answers at {url}", required=False)]
    if route.provider != "ollama":
        return results
    names = {str(m.get("name", "")) for m in tags.get("models", []) if isinstance(m, dict)}
    wanted = route.model
    if wanted in names or f"{wanted}:latest" in names or wanted.removesuffix(":latest") in names:
        results.append(ok("embed_model", f"embed model {wanted!r} is pulled", required=False))
    else:
        detail = f"embed model {wanted!r} is not pulled in Ollama at {url}"
        results.append(problem("embed_model", detail, f"ollama pull {wanted}", required=False))
    return results


def check_provider_keys(settings: Settings) -> list[CheckResult]:
    """Each chat provider's key resolves from its env var or .env file (optional; never shown)."""
    results = []
    chatd = settings.chatd
    for provider in KEYED_PROVIDERS:
        env_name: str = getattr(chatd, f"{provider}_key_env")
        env_file: str = getattr(chatd, f"{provider}_key_file")
        results.append(_key_result(provider, env_name, env_file))
    if settings.embedd.openai_url:
        results.append(
            _key_result("openai_embed", settings.embedd.openai_key_env, settings.embedd.openai_key_file)
        )
    return results


def _key_result(provider: str, env_name: str, env_file: str) -> CheckResult:
    name = f"key:{provider}"
    if resolve_key(env_name, env_file):
        return ok(name, f"{provider} key found ({env_name} or {env_file})", required=False)
    fix = f"export {env_name}=<key>  # or: echo '{env_name}=<key>' > {shlex.quote(env_file)}"
    detail = f"{provider} is not registered: no {env_name} in the environment or {env_file}"
    return problem(name, detail, fix, required=False)


def check_ports(settings: Settings) -> list[CheckResult]:
    """The gateway's port is free (required); each service's own port too (warns: split mode only)."""
    binds = [("gateway", settings.gateway.bind, True)]
    binds += [(name, spec.bind(settings), False) for name, spec in SERVICES.items()]
    return [_port_result(name, bind, required) for name, bind, required in binds]


def _port_result(service: str, bind: str, required: bool) -> CheckResult:
    name = f"port:{service}"
    try:
        host, port = split_bind(bind)
    except ConfigError as exc:
        return problem(name, str(exc), f'set [{service}] bind = "127.0.0.1:<port>" in lakehouse.toml')
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # SO_REUSEADDR as uvicorn sets it: only a live listener makes the bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            serving = _lakehouse_serving(host, port, service)
            if serving is not None:
                return ok(name, f"{bind}: {serving}", required=required)
            fix = (
                f"ss -ltnp 'sport = :{port}'  # find and stop what listens there, "
                f"or set [{service}] bind to a free port in lakehouse.toml"
            )
            return problem(name, f"{bind} is not free: {exc.strerror or exc}", fix, required=required)
    scope = "" if required else " (used when services run apart)"
    return ok(name, f"{bind} is free{scope}", required=required)


def _lakehouse_serving(host: str, port: int, service: str) -> str | None:
    """What a lakehouse listening on `host:port` says of itself, or None when it is not one.

    `GET /health` through `lakehouse.Client`: this service answering with our version
    means the lakehouse is already serving there, not that something else holds the port.
    """
    from lakehouse import __version__
    from lakehouse.client import Client

    shown = f"[{host}]" if ":" in host else host
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else shown
    try:
        with Client(f"http://{shown}:{port}", token="", timeout=HEALTH_TIMEOUT) as client:
            health = client.health()
    except (LakehouseError, ValueError):
        return None
    if health.service != service:  # `lakehouse serve` (every service) answers as the gateway
        return None
    if health.version == __version__:
        return f"the lakehouse is already serving here ({health.service} {health.version})"
    return f"a lakehouse {health.version} is already serving here (this install is {__version__})"


def run_checks(config: str | None = None, *, ports: bool = True) -> list[CheckResult]:
    """Every check, in order; the config check first, the rest only when it passes."""
    result, settings = check_config(config)
    if settings is None:
        return [result]
    checks: list[Callable[[], CheckResult | list[CheckResult]]] = [
        check_python,
        check_packages,
        check_httpfs,
        lambda: check_storage(settings),
        lambda: check_ollama(settings),
        lambda: check_provider_keys(settings),
    ]
    if ports:
        checks.append(lambda: check_ports(settings))
    results = [result]
    for check in checks:
        out = check()
        results.extend(out if isinstance(out, list) else [out])
    return results


def passed(results: list[CheckResult]) -> bool:
    """True when every required check passed."""
    return all(r.status != "fail" for r in results)
