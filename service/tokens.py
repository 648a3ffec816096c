"""API tokens: random secrets shown once, stored only as a SHA-256 hash.

A token is 32 random bytes (so a plain SHA-256 is as good as a slow hash here: there
is nothing to guess), prefixed `gst_` so it is recognisable in logs and secret scanners.
"""

from __future__ import annotations

import hashlib
import secrets

from gigasynth.errors import GigasynthError
from service.store import JobStore, TokenRecord

PREFIX = "gst_"
DEFAULT_MAX_MEGAPIXELS = 1000.0
DEFAULT_MAX_CONCURRENT = 2


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(store: JobStore, name: str, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT) -> tuple[str, TokenRecord]:
    """A new token named `name` with its quotas; returns (the secret, the stored record)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise GigasynthError("a token name must be 1 to 100 characters")
    if not max_megapixels > 0:
        raise GigasynthError(f"--max-megapixels {max_megapixels} must be positive")
    if max_concurrent < 1:
        raise GigasynthError(f"--max-concurrent {max_concurrent} must be at least 1")
    secret = PREFIX + secrets.token_urlsafe(32)
    record = store.add_token(secrets.token_hex(8), name, hash_token(secret), max_megapixels,
                             max_concurrent)
    return secret, record


def find_token(store: JobStore, secret: str) -> TokenRecord | None:
    """The token whose secret this is, or None."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    return store.token_by_hash(hash_token(secret))
