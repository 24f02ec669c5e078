"""What queryd and its worker processes say to each other over a pipe.

Each message is one `send_bytes` frame: a one-byte tag, then a payload.
The parent sends a query as `Q` + a 4-byte header length + a JSON header
(views to set or drop, format, row cap, timeout) + the SQL text as UTF-8,
so a large statement is never JSON-escaped. The worker answers a JSON query
with one `J` frame, an Arrow query with `A` (the IPC schema), then `B`
frames (one per record batch) and a `Z` frame (the end-of-stream marker);
any failure is an `X` frame carrying `{"code", "message"}`. Only JSON and
Arrow IPC cross the pipe from the worker: the server never unpickles what
a process running user SQL sent.
"""

from __future__ import annotations

import json
import struct
from typing import Any

READY = b"R"
QUERY = b"Q"
JSON = b"J"
ARROW_SCHEMA = b"A"
ARROW_BATCH = b"B"
ARROW_END = b"Z"
ERROR = b"X"

_LEN = struct.Struct(">I")


def query_frame(header: dict[str, Any], sql: str) -> bytes:
    """A query message: its header and the SQL text."""
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    return QUERY + _LEN.pack(len(head)) + head + sql.encode("utf-8")


def parse_query(frame: bytes) -> tuple[dict[str, Any], str]:
    """The header and SQL of a query message."""
    (size,) = _LEN.unpack_from(frame, 1)
    start = 1 + _LEN.size
    header: dict[str, Any] = json.loads(frame[start : start + size])
    return header, frame[start + size :].decode("utf-8")


def error_frame(code: str, message: str) -> bytes:
    """A failure: the lakehouse error code and its message."""
    return ERROR + json.dumps({"code": code, "message": message}, ensure_ascii=False).encode("utf-8")


def json_frame(data: dict[str, Any]) -> bytes:
    """A whole JSON answer."""
    return JSON + json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
