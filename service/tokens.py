"""API tokens: random secrets shown once, stored only as a SHA-256 hash.

A token is 32 random bytes (so a plain SHA-256 is as good as a slow hash here: there
is nothing to guess), prefixed `gst_` so it is recognisable in logs and secret scanners.
A token may expire and may be revoked; both are read from the store on every request
(and for every use of a link the token signed), so they take effect at once, also for a
server that is running.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from gigasynth.errors import GigasynthError
from gigasynth_service.store import JobStore, TokenRecord

PREFIX = "gst_"
DEFAULT_MAX_MEGAPIXELS = 1000.0
DEFAULT_MAX_CONCURRENT = 2


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    store: JobStore,
    name: str,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    expires: float | None = None,
) -> tuple[str, TokenRecord]:
    """A new token named `name` with its quotas and optional expiry (Unix seconds).

    Returns (the secret, the stored record).
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise GigasynthError("a token name must be 1 to 100 characters")
    if not max_megapixels > 0:
        raise GigasynthError(f"--max-megapixels {max_megapixels} must be positive")
    if max_concurrent < 1:
        raise GigasynthError(f"--max-concurrent {max_concurrent} must be at least 1")
    if expires is not None and expires <= time.time():
        raise GigasynthError("a token's expiry must lie in the future")
    secret = PREFIX + secrets.token_urlsafe(32)
    record = store.add_token(
        secrets.token_hex(8), name, hash_token(secret), max_megapixels, max_concurrent, expires
    )
    return secret, record


def find_token(store: JobStore, secret: str) -> TokenRecord | None:
    """The token whose secret this is, or None (whether or not it is still usable)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    return store.token_by_hash(hash_token(secret))


def token_problem(token: TokenRecord, now: float | None = None) -> str | None:
    """Why the token may no longer be used (revoked, expired), or None when it may."""
    if token.revoked is not None:
        return "revoked"
    if token.expires is not None and token.expires <= (time.time() if now is None else now):
        return "expired"
    return None


def named_token(store: JobStore, name_or_id: str) -> TokenRecord:
    """The token with this name (or else this id); a GigasynthError when there is none."""
    tokens = store.tokens()
    for field in ("name", "id"):
        for token in tokens:
            if getattr(token, field) == name_or_id:
                return token
    raise GigasynthError(f"no token named or with id {name_or_id!r} (see `gigasynth token list`)")


def revoke_token(store: JobStore, name_or_id: str) -> TokenRecord:
    """Revoke a token by name or id: its requests and the links it signed stop working."""
    store.revoke_token(named_token(store, name_or_id).id)
    return named_token(store, name_or_id)
