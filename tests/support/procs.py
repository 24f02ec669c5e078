"""Real `lakehouse` processes for end-to-end tests: start, wait, kill -9, restart, stop."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
# `lakehouse serve` prints this once it accepts connections (see lakehouse.cli.listen).
LISTENING = re.compile(rb"^lakehouse \S+ listening on http://127\.0\.0\.1:(\d+)", re.MULTILINE)
IN_USE = (b"Address already in use", b"[Errno 98]")
BIND_ATTEMPTS = 5
_HELD: list[socket.socket] = []
_LOG_IDS = itertools.count(1)


def closed_port() -> int:
    """A 127.0.0.1 port that refuses connections for the rest of the test session.

    The port is held by a bound socket that never listens, so nothing else can
    take it: use it for "nothing answers here" URLs. Servers the tests start
    bind port 0 themselves and report the port they got.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    port: int = sock.getsockname()[1]
    return port


def closed_url() -> str:
    """`http://127.0.0.1:<closed_port()>`: a URL where nothing answers."""
    return f"http://127.0.0.1:{closed_port()}"


def toml_value(value: Any) -> str:
    """A Python value as a TOML literal (str, bool, int, float, dict of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a lakehouse.toml from `{section: {key: value}}`."""
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in keys.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@contextlib.contextmanager
def serving(config: Path, *, timeout: float = 30.0, **options: Any) -> Iterator[LakehouseProcess]:
    """A started `lakehouse serve` over `config`, stopped afterwards even when the test fails.

    `options` go to `LakehouseProcess` (`service`, `env`, `cwd`, `port`); `timeout`
    bounds the start. A start that fails or times out stops what it spawned too.
    """
    proc = LakehouseProcess(config, **options)
    try:
        yield proc.start(timeout=timeout)
    finally:
        proc.stop()


class LakehouseProcess:
    """One `lakehouse serve [service]` process.

    Without `port` it binds port 0 and the port it got is read from its
    "listening on" line; `restart()` then asks for that same port again.
    """

    def __init__(
        self,
        config: Path,
        service: str | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.port = port or 0
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or config.parent
        self.log_path = config.parent / f"{service or 'all'}-{os.getpid()}-{next(_LOG_IDS)}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the process."""
        if not self.port:
            raise RuntimeError("the process has not reported its port yet: start() it first")
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LakehouseProcess:
        """Start the process and wait until it reports its port and `/health` answers 200.

        A fixed port that is still in use (a restart racing the old socket's
        release) is retried a few times before giving up.
        """
        deadline = time.monotonic() + timeout
        for attempt in range(BIND_ATTEMPTS):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            try:
                return self._wait_ready(offset, deadline)
            except _AddressInUse:
                if attempt == BIND_ATTEMPTS - 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"port {self.port} stayed in use:\n{self.log()}")

    def _spawn(self) -> None:
        args = [LAKEHOUSE, "serve"]
        if self.service:
            args.append(self.service)
        args += ["--config", str(self.config), "--bind", f"127.0.0.1:{self.port}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        log.close()

    def _wait_ready(self, offset: int, deadline: float) -> LakehouseProcess:
        """Poll the log for the port line, then `/health`, until `deadline`."""
        assert self.proc is not None
        port: int | None = None
        while time.monotonic() < deadline:
            if port is None:
                found = LISTENING.search(self._log_bytes(offset))
                if found:
                    port = int(found.group(1))
            if self.proc.poll() is not None:
                said = b" ".join(self._log_bytes(offset).split())  # the CLI may wrap long lines
                if any(marker in said for marker in IN_USE):
                    raise _AddressInUse
                raise RuntimeError(f"lakehouse exited with {self.proc.returncode}:\n{self.log()}")
            if port is not None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                        self.port = port
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"lakehouse did not become healthy in time:\n{self.log()}")

    def _log_bytes(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read()

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it holds `text` (a request's log line is written after its answer is sent).

        Raises:
            AssertionError: `text` did not appear within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log after {timeout}s:\n{log[-2000:]}")
            time.sleep(0.02)

    def kill9(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Terminate the process gracefully, killing it if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> LakehouseProcess:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start()

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client bound to the process."""
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60.0), **kwargs)


class _AddressInUse(Exception):
    """The process could not bind its fixed port."""
