"""Typed errors, each carrying its HTTP status and contract code.

    LakehouseError                     500 internal
    ├── InvalidRequest                 400 invalid_request
    │   ├── InvalidKey                 400 invalid_key
    │   ├── InvalidName                400 invalid_name
    │   ├── InvalidCsv                 400 invalid_csv
    │   ├── InvalidFile                400 invalid_file
    │   ├── MissingObject              400 missing_object
    │   ├── DimMismatch                400 dim_mismatch
    │   ├── ForbiddenStatement         400 forbidden_statement
    │   ├── SqlError                   400 sql_error
    │   └── UnsupportedParameter       400 unsupported_parameter
    ├── Unauthorized                   401 unauthorized
    ├── Forbidden                      403 forbidden
    │   ├── ReservedKey                403 reserved_key
    │   └── InsufficientScope          403 insufficient_scope
    ├── NotFound                       404 not_found
    │   └── ProviderNotRegistered      404 provider_not_registered
    ├── MethodNotAllowed               405 method_not_allowed
    ├── QueryTimeout                   408 query_timeout
    ├── RequestTimeout                 408 request_timeout
    ├── Conflict                       409 conflict
    │   ├── AlreadyExists              409 already_exists
    │   ├── SchemaDrift                409 schema_drift
    │   ├── VersionConflict            409 version_conflict
    │   └── CommitFailed               409 commit_failed
    ├── PreconditionFailed             412 precondition_failed
    ├── TooLarge                       413 too_large
    ├── RangeNotSatisfiable            416 range_not_satisfiable
    ├── HeadersTooLarge                431 headers_too_large
    ├── RateLimited                    429 rate_limited
    ├── UpstreamError                  502 upstream_error
    ├── Unavailable                    503 unavailable
    │   ├── Busy                       503 busy
    │   └── ProviderUnavailable        503 provider_unavailable
    └── UpstreamTimeout                504 upstream_timeout

The domain raises these; one handler renders them as
`{"error": {"code", "message", ...detail}}`. A client talking to a remote
service turns the code back into the same class with `from_body`, so one
process and split mode fail identically.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LakehouseError(Exception):
    """Base of every error the lakehouse reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The contract's error body."""
        return {"error": {"code": self.code, "message": self.message, **self.detail}}

    @staticmethod
    def from_body(status: int, body: Any, headers: dict[str, str] | None = None) -> LakehouseError:
        """Rebuild the typed error a remote service sent."""
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return UpstreamError(f"unexpected answer with status {status}", upstream_status=status)
        detail = {k: v for k, v in err.items() if k not in ("code", "message")}
        cls = ERRORS_BY_CODE.get(str(err.get("code")))
        message = str(err.get("message", ""))
        if cls is None:
            exc: LakehouseError = LakehouseError(message, **detail)
            exc.status = status  # type: ignore[misc]
            exc.code = str(err.get("code", "internal"))  # type: ignore[misc]
            return exc
        return cls(message, headers=headers, **detail)


class InvalidRequest(LakehouseError):
    """The request is malformed or violates a documented limit."""

    status = 400
    code = "invalid_request"


class InvalidKey(InvalidRequest):
    """An object key breaks the key rules."""

    code = "invalid_key"


class InvalidName(InvalidRequest):
    """A dataset or index name breaks the naming rules."""

    code = "invalid_name"


class InvalidCsv(InvalidRequest):
    """The uploaded CSV cannot be parsed."""

    code = "invalid_csv"


class InvalidFile(InvalidRequest):
    """An uploaded file that is not CSV (Parquet, JSON, NDJSON, XLSX) cannot be read."""

    code = "invalid_file"


class MissingObject(InvalidRequest):
    """A manifest names objects that do not exist."""

    code = "missing_object"


class DimMismatch(InvalidRequest):
    """A vector's length differs from its index's dimension."""

    code = "dim_mismatch"


class ForbiddenStatement(InvalidRequest):
    """A SQL statement that is not one read-only statement."""

    code = "forbidden_statement"


class SqlError(InvalidRequest):
    """DuckDB rejected the query."""

    code = "sql_error"


class UnsupportedParameter(InvalidRequest):
    """A request parameter the route or its provider cannot honour (never silently dropped)."""

    code = "unsupported_parameter"


class Unauthorized(LakehouseError):
    """No valid token: missing, unknown, expired or revoked (sent with `WWW-Authenticate: Bearer`)."""

    status = 401
    code = "unauthorized"


class Forbidden(LakehouseError):
    """The request reaches for something outside the lakehouse."""

    status = 403
    code = "forbidden"


class ReservedKey(Forbidden):
    """A write to a key the lakehouse keeps for itself."""

    code = "reserved_key"


class InsufficientScope(Forbidden):
    """A valid token whose scope does not cover the request."""

    code = "insufficient_scope"


class NotFound(LakehouseError):
    """The named thing does not exist."""

    status = 404
    code = "not_found"


class ProviderNotRegistered(NotFound):
    """A model name routes to a provider that is not configured."""

    code = "provider_not_registered"


class MethodNotAllowed(LakehouseError):
    """The route exists but not with this method."""

    status = 405
    code = "method_not_allowed"


class QueryTimeout(LakehouseError):
    """A query ran past its time limit and was interrupted."""

    status = 408
    code = "query_timeout"


class RequestTimeout(LakehouseError):
    """A client sent nothing for `[http] idle_timeout_secs` in the middle of its request."""

    status = 408
    code = "request_timeout"


class Conflict(LakehouseError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    """Something by that name already exists."""

    code = "already_exists"


class SchemaDrift(Conflict):
    """A schema differs from the dataset's current one."""

    code = "schema_drift"


class VersionConflict(Conflict):
    """A dataset's current version is not the one a conditional register expected."""

    code = "version_conflict"


class CommitFailed(Conflict):
    """An Iceberg commit whose requirements no longer hold, or that changes what a commit may not."""

    code = "commit_failed"


class PreconditionFailed(LakehouseError):
    """A conditional write's `If-Match` / `If-None-Match` did not hold; nothing was written."""

    status = 412
    code = "precondition_failed"


class TooLarge(LakehouseError):
    """A body exceeds its size cap."""

    status = 413
    code = "too_large"


class RangeNotSatisfiable(LakehouseError):
    """A `Range` starts at or past the object's end (answered with `Content-Range: bytes */size`)."""

    status = 416
    code = "range_not_satisfiable"


class HeadersTooLarge(LakehouseError):
    """The request line and headers exceed `[http] max_header_bytes`."""

    status = 431
    code = "headers_too_large"


class RateLimited(LakehouseError):
    """An upstream provider asked us to slow down."""

    status = 429
    code = "rate_limited"


class UpstreamError(LakehouseError):
    """An upstream provider or service answered with an error."""

    status = 502
    code = "upstream_error"


class Unavailable(LakehouseError):
    """A needed service cannot be reached."""

    status = 503
    code = "unavailable"


class Busy(Unavailable):
    """Too many requests in flight; retry later."""

    code = "busy"


class ProviderUnavailable(Unavailable):
    """A model provider cannot be reached."""

    code = "provider_unavailable"


class UpstreamTimeout(LakehouseError):
    """An upstream provider did not answer in time."""

    status = 504
    code = "upstream_timeout"


def _all_subclasses(cls: type[LakehouseError]) -> list[type[LakehouseError]]:
    out: list[type[LakehouseError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_ALL_ERRORS: list[type[LakehouseError]] = [LakehouseError, *_all_subclasses(LakehouseError)]
ERRORS_BY_CODE: dict[str, type[LakehouseError]] = {cls.code: cls for cls in _ALL_ERRORS}
