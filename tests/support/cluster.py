"""A whole lakehouse for end-to-end tests, in either serve mode, behind one URL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from lakehouse.services.table import SERVICES
from tests.support.procs import LakehouseProcess, closed_url, write_config

MODES = ("embedded", "split")
START_TIMEOUT = 90.0


class LakehouseCluster:
    """One lakehouse: a single `lakehouse serve` (embedded) or every service apart plus a gateway (split).

    Clients talk to `.url` (the gateway's port in both modes) and cannot tell
    the modes apart. Every process shares one config file and one storage root.
    """

    def __init__(
        self,
        mode: str,
        workdir: Path,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        services: Iterable[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        sections: dict[str, dict[str, Any]] = {"storage": {"root": str(workdir / "data")}}
        for section, keys in (config or {}).items():
            sections.setdefault(section, {}).update(keys)
        self.config_path = write_config(workdir / f"lakehouse-{mode}.toml", sections)
        gateway_service = "gateway" if mode == "split" else None
        self.gateway = LakehouseProcess(self.config_path, service=gateway_service, env=env)
        # In split mode only these services run (all by default); the others'
        # upstream URLs point at ports held closed, so their routes answer 503 unavailable.
        # Each service binds port 0; the gateway learns the ports once they are up.
        wanted = set(SERVICES if services is None else services) if mode == "split" else set()
        self.services: dict[str, LakehouseProcess] = {
            name: LakehouseProcess(self.config_path, service=name, env=env)
            for name in SERVICES
            if name in wanted
        }
        self._closed = {name: closed_url() for name in SERVICES if mode == "split" and name not in wanted}

    @property
    def url(self) -> str:
        """The one URL clients use: the gateway's."""
        return self.gateway.url

    @property
    def processes(self) -> list[LakehouseProcess]:
        """Every process of the cluster, services first."""
        return [*self.services.values(), self.gateway]

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client bound to the gateway."""
        return self.gateway.client(**kwargs)

    def service(self, name: str) -> LakehouseProcess:
        """The process serving `name`: its own in split mode, the single one when embedded."""
        return self.services.get(name, self.gateway)

    def start_all(self) -> LakehouseCluster:
        """Start every process and wait until all answer `/health`: services first, then the gateway.

        The services start in parallel on ports of their own choosing (the same
        ones again on a restart); the gateway is then told where they are through
        `LAKEHOUSE_GATEWAY__<SERVICE>_URL`.
        """
        # Many interpreters importing at once on two cores: allow more than one process's start-up time.
        _each(self.services.values(), lambda proc: proc.start(timeout=START_TIMEOUT))
        if self.mode == "split":
            upstreams = {**self._closed, **{name: proc.url for name, proc in self.services.items()}}
            self.gateway.env.update(
                {f"LAKEHOUSE_GATEWAY__{name.upper()}_URL": url for name, url in upstreams.items()}
            )
        self.gateway.start(timeout=START_TIMEOUT)
        return self

    def kill9_all(self) -> None:
        """SIGKILL every process, as a power cut would."""
        _each(self.processes, lambda proc: proc.kill9())

    def stop_all(self) -> None:
        """Stop every process gracefully."""
        _each(self.processes, lambda proc: proc.stop())

    def restart_all(self) -> LakehouseCluster:
        """Stop whatever still runs, then start everything again on the same ports."""
        self.stop_all()
        return self.start_all()

    def log(self) -> str:
        """Everything every process wrote so far."""
        return "\n".join(f"--- {proc.service or 'all'} ---\n{proc.log()}" for proc in self.processes)


def _each(procs: Iterable[LakehouseProcess], action: Callable[[LakehouseProcess], object]) -> None:
    """Run `action` on every process in parallel, re-raising the first failure."""
    items = list(procs)
    with ThreadPoolExecutor(max(1, len(items))) as pool:
        for future in [pool.submit(action, proc) for proc in items]:
            future.result()
