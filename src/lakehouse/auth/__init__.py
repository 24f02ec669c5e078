"""Bearer tokens with scopes: the token store, the scope table and the check every app runs.

from lakehouse.auth import TokenStore, Scope, required_scope, with_auth
"""

from __future__ import annotations

from lakehouse.auth.cache import TokenCache
from lakehouse.auth.middleware import BearerAuth, auth_required, is_loopback, with_auth
from lakehouse.auth.scopes import Scope, required_scope
from lakehouse.auth.tokens import TokenRecord, TokenStore, hash_token

__all__ = [
    "BearerAuth",
    "Scope",
    "TokenCache",
    "TokenRecord",
    "TokenStore",
    "auth_required",
    "hash_token",
    "is_loopback",
    "required_scope",
    "with_auth",
]
