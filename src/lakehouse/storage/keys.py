"""Object key rules, shared by every backend and the storage routes.

A key is 1..1024 bytes of UTF-8 with no leading `/`, no empty, `.` or `..`
segments, and no backslash or control characters. Keys under
`_lakehouse/` belong to the lakehouse itself.
"""

from __future__ import annotations

import re

from lakehouse.errors import InvalidKey
from lakehouse.storage.base import RESERVED_PREFIX

MAX_KEY_BYTES = 1024

# C0 controls, DEL and the C1 controls: invisible in logs and listings, and
# some of them (NUL, newline) break file systems or HTTP headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_key(key: str) -> str:
    """Return `key` unchanged when it follows the key rules.

    Raises:
        InvalidKey: the key is empty, too long, absolute, has an empty, `.` or
            `..` segment, or holds a backslash or a control character.
    """
    if not key:
        raise InvalidKey("the key is empty", key=key)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("the key is not valid UTF-8", key=key) from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"the key is {size} bytes long; the limit is {MAX_KEY_BYTES}", key=key[:64] + "...")
    if key.startswith("/"):
        raise InvalidKey("the key must not start with '/'", key=key)
    if "\\" in key:
        raise InvalidKey("the key must not contain a backslash", key=key)
    if _CONTROL.search(key):
        shown = key.encode("unicode_escape").decode()
        raise InvalidKey("the key must not contain control characters", key=shown)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"the key has an empty, '.' or '..' segment: {key!r}", key=key)
    return key


def is_reserved(key: str) -> bool:
    """Whether `key` lies under the prefix the lakehouse keeps for itself."""
    return key.startswith(RESERVED_PREFIX) or key == RESERVED_PREFIX.rstrip("/")


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix when it could start a valid key.

    Raises:
        InvalidKey: the prefix is too long or holds a backslash or control character.
    """
    if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"the prefix is longer than {MAX_KEY_BYTES} bytes")
    if "\\" in prefix or _CONTROL.search(prefix) or prefix.startswith("/"):
        raise InvalidKey("the prefix must not start with '/' or contain a backslash or control character")
    return prefix
