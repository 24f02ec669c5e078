"""How the ask loop reaches the lakehouse: the services' public HTTP API, in-process or across the network.

The tools read the catalog, run SQL and search indexes through the same
routes every client uses, so the SQL runs in the same sandbox as `/v1/sql`,
with the same caps, and the caller's token is checked by each service as for
any request. Each service is reached either in-process, as an ASGI call into
the app that serves it (embedded mode), or at its `[gateway] <service>_url`
(split mode: the URLs the gateway proxies to). `Lakehouse` is what the tools
depend on; `HttpLakehouse` is its one implementation.

httpx (and the command line it loads with itself: click, rich, pygments) is
imported when an ask makes its first call, on a worker thread (`ready`), not
when the server starts; `lakehouse serve` loads it once listening.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from lakehouse.errors import LakehouseError, Unavailable, UpstreamError, UpstreamTimeout
from lakehouse.lazy import LazyImport

if TYPE_CHECKING:
    import httpx

# The services the tools call, by the routes they own.
SERVICES = ("catalogd", "queryd", "vectord")
IN_PROCESS = "http://lakehouse.internal"
# Headers of the caller's request that the tools' requests carry on.
PASSED_ON = ("authorization", "x-request-id")


class Lakehouse(Protocol):
    """The reads the ask tools make; each raises the typed error of the service's refusal."""

    async def datasets(self) -> list[dict[str, Any]]:
        """Every dataset's current version (`name`, `version`, `row_count`, ...)."""
        ...

    async def dataset(self, name: str) -> dict[str, Any]:
        """A dataset's current manifest."""
        ...

    async def versions(self, name: str) -> list[dict[str, Any]]:
        """A dataset's history, oldest first."""
        ...

    async def sql(self, sql: str, max_rows: int) -> dict[str, Any]:
        """`POST /v1/sql`'s JSON answer."""
        ...

    async def index(self, name: str) -> dict[str, Any]:
        """A vector index's info."""
        ...

    async def search(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /v1/vectors/index/{name}/search`'s answer."""
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


HTTPX = LazyImport("httpx")
load = HTTPX.load
ready = HTTPX.ready


def _segment(name: str) -> str:
    return quote(name, safe="")


class HttpLakehouse:
    """`Lakehouse` over one httpx client per service (an ASGI transport or a base URL each).

    `make_clients` builds them on the first call, once httpx is loaded.
    """

    def __init__(self, make_clients: Callable[[], Mapping[str, httpx.AsyncClient]]) -> None:
        self._make_clients = make_clients
        self._clients: dict[str, httpx.AsyncClient] | None = None

    async def _client(self, service: str) -> httpx.AsyncClient:
        if self._clients is None:
            await ready()
            if self._clients is None:  # another call may have made them meanwhile
                self._clients = dict(self._make_clients())
        return self._clients[service]

    async def _json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        client = await self._client(service)
        import httpx  # loaded by `_client`, off the loop

        try:
            response = await client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"{service} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{service} at {client.base_url} is unreachable ({type(exc).__name__})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise UpstreamError(
                f"{service} answered {response.status_code} with a body that is not JSON"
            ) from None
        if response.is_error:
            raise LakehouseError.from_body(response.status_code, body)
        return body

    async def datasets(self) -> list[dict[str, Any]]:
        """Every dataset's current version."""
        body = await self._json("catalogd", "GET", "/v1/catalog/datasets")
        return list(body.get("datasets") or [])

    async def dataset(self, name: str) -> dict[str, Any]:
        """A dataset's current manifest."""
        body: dict[str, Any] = await self._json("catalogd", "GET", f"/v1/catalog/datasets/{_segment(name)}")
        return body

    async def versions(self, name: str) -> list[dict[str, Any]]:
        """A dataset's history, oldest first."""
        body = await self._json("catalogd", "GET", f"/v1/catalog/datasets/{_segment(name)}/versions")
        return list(body.get("versions") or [])

    async def sql(self, sql: str, max_rows: int) -> dict[str, Any]:
        """One read-only statement through queryd's sandbox, at most `max_rows` rows."""
        body: dict[str, Any] = await self._json(
            "queryd", "POST", "/v1/sql", json={"sql": sql, "max_rows": max_rows}
        )
        return body

    async def index(self, name: str) -> dict[str, Any]:
        """A vector index's info."""
        body: dict[str, Any] = await self._json("vectord", "GET", f"/v1/vectors/index/{_segment(name)}")
        return body

    async def search(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One search of an index."""
        path = f"/v1/vectors/index/{_segment(name)}/search"
        answer: dict[str, Any] = await self._json("vectord", "POST", path, json=dict(body))
        return answer

    async def aclose(self) -> None:
        """Close every client (none were made if no call was)."""
        clients, self._clients = self._clients or {}, None
        for client in clients.values():
            await client.aclose()


def connect(
    app: Any,
    served: frozenset[str],
    upstreams: Mapping[str, str],
    headers: Mapping[str, str],
    timeout: float,
) -> HttpLakehouse:
    """An `HttpLakehouse` for one request: `served` services through `app`, the others at `upstreams`.

    `headers` are the caller's (only `PASSED_ON` ones are kept), so every
    service checks the caller's own token.
    """
    kept = {k: v for k, v in headers.items() if k.lower() in PASSED_ON}
    kept["accept-encoding"] = "identity"
    urls = {service: upstreams[service].rstrip("/") for service in SERVICES if service not in served}

    def clients() -> dict[str, httpx.AsyncClient]:
        import httpx

        made: dict[str, httpx.AsyncClient] = {}
        limit = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        for service in SERVICES:
            if service in served:
                transport = httpx.ASGITransport(app=app)
                made[service] = httpx.AsyncClient(
                    transport=transport, base_url=IN_PROCESS, headers=kept, timeout=limit
                )
            else:
                made[service] = httpx.AsyncClient(
                    base_url=urls[service], headers=kept, timeout=limit, trust_env=False
                )
        return made

    return HttpLakehouse(clients)
