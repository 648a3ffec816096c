"""Short-lived signed links: a browser's tile requests carry no Authorization header.

A link grants read access to one job's viewer, status, tiles and downloads until `exp`
(Unix seconds): `sig` = HMAC-SHA256(key, "<job id>.<exp>"). The key comes from the
configuration or is generated once and kept (mode 0600) in the data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from gigasynth.atomic import atomic_path


def load_or_create_key(data_dir: Path) -> bytes:
    """The data dir's signing key, created on first use."""
    path = data_dir / "signing.key"
    if not path.exists():
        with atomic_path(path, mode=0o600) as tmp:
            tmp.write_text(secrets.token_hex(32))
            os.chmod(tmp, 0o600)
    return path.read_text().strip().encode()


class LinkSigner:
    """Signs and checks (job id, expiry) pairs."""

    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def _signature(self, job_id: str, exp: int) -> str:
        return hmac.new(self._key, f"{job_id}.{exp}".encode(), hashlib.sha256).hexdigest()

    def query(self, job_id: str, now: float | None = None) -> str:
        """The query string (without '?') that grants access to `job_id` for ttl_s seconds."""
        exp = int((now if now is not None else time.time()) + self.ttl_s)
        return f"exp={exp}&sig={self._signature(job_id, exp)}"

    def check(self, job_id: str, exp: str, sig: str) -> str | None:
        """None when the link is valid, else the reason it is not."""
        if not exp.isdigit() or len(exp) > 12:
            return "signed link has a malformed expiry"
        if not hmac.compare_digest(self._signature(job_id, int(exp)), sig):
            return "signed link signature does not match"
        if int(exp) < time.time():
            return "signed link has expired"
        return None
