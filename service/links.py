"""Signed links: a browser's tile requests carry no Authorization header.

A link grants read access to one job's viewer, status, tiles and downloads until `exp`
(absolute Unix seconds), on behalf of the token that minted it:
`sig` = HMAC-SHA256(key, "gigasynth-link/1 <job id> <token id> <exp>"). Because the
expiry is signed as an absolute time, a link's lifetime may differ per link without a
new format. Only a bearer token mints links (auth checks that the minting token is still
valid on every use); a request made with a link gets that same link back, never a new one.
The token holder picks a link's lifetime when minting it (up to the service's maximum).

A tile signature has the same form under another message ("gigasynth-tiles/1 ..."): it
opens the job's DeepZoom descriptor and tiles only, for a few minutes, and is handed to
the viewer page in exchange for its link, never reaching past that link's expiry. Tile
URLs (in caches, logs, screenshots of the network panel) so carry a signature that is soon
useless, and the page's long-lived link cannot be taken from them.

The key (32+ bytes) comes from the configuration or is generated once and kept, mode
0600, as `signing.key` beside the job store.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import time
from pathlib import Path

from gigasynth.atomic import atomic_write_bytes
from gigasynth.errors import GigasynthError

MIN_KEY_BYTES = 32
KEY_FILE = "signing.key"
_EXP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: '²'.isdigit() but int('²') fails
_SIG = re.compile(r"[0-9a-f]{64}")
LINK = "gigasynth-link/1"  # the viewer, status, downloads, tiles
TILES = "gigasynth-tiles/1"  # the DeepZoom descriptor and tiles only


def checked_key(key: bytes, source: str, remedy: str = "") -> bytes:
    """`key` if it is long enough to sign with, else a one-line GigasynthError naming `source`."""
    if len(key) < MIN_KEY_BYTES:
        raise GigasynthError(
            f"the signing key from {source} is {len(key)} bytes; at least "
            f"{MIN_KEY_BYTES} are needed{remedy}"
        )
    return key


def load_or_create_key(key_dir: Path) -> bytes:
    """The signing key kept in `key_dir`, generated (64 hex characters, mode 0600) on first use."""
    path = key_dir / KEY_FILE
    if not path.exists():
        atomic_write_bytes(path, secrets.token_hex(32).encode(), mode=0o600)
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return checked_key(
        path.read_bytes().strip(), str(path), " (delete the file to have a new one generated)"
    )


class LinkSigner:
    """Signs and checks (job id, minting token id, expiry) triples, as links or as tile
    signatures (`kind`)."""

    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = checked_key(key, "the configuration")
        self.ttl_s = ttl_s

    def _signature(self, job_id: str, token_id: str, exp: int, kind: str) -> bytes:
        message = f"{kind} {job_id} {token_id} {exp}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest().encode()

    def expiry(
        self, now: float | None = None, ttl_s: int | None = None, not_after: float | None = None
    ) -> int:
        """`ttl_s` (default: the configured lifetime) from `now`, rounded up to a whole
        second, but never past `not_after`."""
        exp = math.ceil(
            (time.time() if now is None else now) + (self.ttl_s if ttl_s is None else ttl_s)
        )
        return exp if not_after is None else min(exp, int(not_after))

    def signed(self, job_id: str, token_id: str, exp: int, kind: str = LINK) -> str:
        """The query string (without '?') granting `kind` access to `job_id` until `exp`."""
        return f"exp={exp}&sig={self._signature(job_id, token_id, exp, kind).decode()}"

    def query(self, job_id: str, token_id: str, now: float | None = None) -> str:
        """The query string (without '?') granting access to `job_id` for ttl_s seconds."""
        return self.signed(job_id, token_id, self.expiry(now))

    def check(
        self, job_id: str, token_id: str, exp: str, sig: str, kinds: tuple[str, ...] = (LINK,)
    ) -> str | None:
        """None when the link (or, where `kinds` has TILES, the tile signature) is valid
        for the job of token `token_id`, else why it is not."""
        if _EXP.fullmatch(exp) is None:
            return "signed link has a malformed expiry"
        if _SIG.fullmatch(sig) is None:
            return "signed link has a malformed signature"
        if not any(
            hmac.compare_digest(self._signature(job_id, token_id, int(exp), kind), sig.encode())
            for kind in kinds
        ):
            return "signed link signature does not match"
        if int(exp) < time.time():
            return "signed link has expired"
        return None
