"""API tokens kept in the object store as hashes: create, list, revoke.

A token is `lh_` plus 43 URL-safe characters (256 random bits), shown once
when it is created. The store keeps only its SHA-256, beside its name,
scope and dates, one JSON object per token under `_lakehouse/auth/tokens/`
(a reserved prefix: the storage API cannot write there). Revoking a token
deletes its record, so every process stops accepting it at its next refresh.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.auth.scopes import Scope
from lakehouse.errors import AlreadyExists, InvalidName, InvalidRequest, NotFound
from lakehouse.storage import ObjectStore
from lakehouse.storage.base import PRIVATE_PREFIX

TOKENS_PREFIX = PRIVATE_PREFIX + "tokens/"
TOKEN_PREFIX = "lh_"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def hash_token(token: str) -> str:
    """The SHA-256 of a token, as 64 hex digits: all the store ever holds of it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh high-entropy token with the recognisable `lh_` prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def validate_name(name: str) -> str:
    """Return a token name that follows `^[a-z0-9][a-z0-9_.-]{0,62}$`.

    Raises:
        InvalidName: any other name.
    """
    if not NAME_RE.fullmatch(name):
        raise InvalidName(
            f"token name {name[:80]!r} must be 1-63 of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def token_key(name: str) -> str:
    """The object key holding a token's record."""
    return f"{TOKENS_PREFIX}{validate_name(name)}.json"


@dataclass(frozen=True)
class TokenRecord:
    """What the store knows of a token: never the token itself."""

    name: str
    scope: Scope
    sha256: str
    created_at: datetime
    expires_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the token's expiry has passed."""
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        return {
            "name": self.name,
            "scope": self.scope.label,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    def public(self) -> dict[str, Any]:
        """The record as listed: name, scope and dates, never the hash."""
        body = self.to_json()
        del body["sha256"]
        return body

    @classmethod
    def from_json(cls, data: Any) -> TokenRecord:
        """Parse a stored record.

        Raises:
            ValueError: the record is malformed.
        """
        if not isinstance(data, dict):
            raise ValueError("a token record must be a JSON object")
        try:
            name = validate_name(str(data["name"]))
            digest = str(data["sha256"])
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError("sha256 must be 64 lowercase hex digits")
            expires = data.get("expires_at")
            return cls(
                name=name,
                scope=Scope.parse(str(data["scope"])),
                sha256=digest,
                created_at=_aware(datetime.fromisoformat(str(data["created_at"]))),
                expires_at=_aware(datetime.fromisoformat(str(expires))) if expires else None,
            )
        except (KeyError, InvalidName) as exc:
            raise ValueError(f"malformed token record: {exc}") from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class TokenStore:
    """Token records over an object store; every process reading the same store agrees."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def create(
        self,
        name: str,
        scope: Scope,
        *,
        expires_days: float | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, TokenRecord]:
        """Mint a token named `name`; returns the token (shown once) and its record.

        Args:
            name: a new token name.
            scope: what the token may do.
            expires_days: days until it expires (must be positive); None: never.
            expires_at: an explicit expiry instead of `expires_days`.

        Raises:
            InvalidName: the name breaks the naming rule.
            InvalidRequest: `expires_days` is not positive.
            AlreadyExists: a token by that name exists.
        """
        key = token_key(name)
        now = datetime.now(UTC)
        if expires_days is not None:
            if not expires_days > 0:
                raise InvalidRequest(f"expires_days must be positive, not {expires_days}")
            expires_at = now + timedelta(days=expires_days)
        token = new_token()
        record = TokenRecord(name, scope, hash_token(token), now, _aware(expires_at) if expires_at else None)
        payload = json.dumps(record.to_json(), separators=(",", ":")).encode()
        try:
            await self.store.put_bytes(key, payload, if_absent=True)
        except AlreadyExists:
            raise AlreadyExists(
                f"a token named {name!r} exists; revoke it first or pick another name"
            ) from None
        return token, record

    async def get(self, name: str) -> TokenRecord:
        """The record of the token named `name`.

        Raises:
            NotFound: no such token.
            ValueError: its record is malformed.
        """
        try:
            data = await self.store.get_bytes(token_key(name))
        except NotFound:
            raise NotFound(f"no token named {name!r}") from None
        return TokenRecord.from_json(json.loads(data))

    async def list(self) -> list[TokenRecord]:
        """Every token's record, by name; unreadable records are skipped."""
        infos, _ = await self.store.list(TOKENS_PREFIX)
        records = []
        for info in infos:
            try:
                records.append(TokenRecord.from_json(json.loads(await self.store.get_bytes(info.key))))
            except (NotFound, ValueError):
                continue  # revoked meanwhile, or not a record
        return sorted(records, key=lambda r: r.name)

    async def revoke(self, name: str) -> None:
        """Delete the token named `name`; processes stop accepting it within seconds.

        Raises:
            NotFound: no such token.
        """
        try:
            await self.store.delete(token_key(name))
        except NotFound:
            raise NotFound(f"no token named {name!r}") from None
