"""Logging of `gigasynth serve`: uvicorn's logs (the access log too) without secrets.

A signed link's `sig` grants access to a job, and so does an API token: neither may reach
a log line. Every handler of the server gets a filter that replaces the values of
secret query parameters (`sig`, `token`, `key`, ...; matched after percent-decoding of
the name) and anything that looks like an API token (`gst_...`) with "REDACTED".
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from gigasynth_service.tokens import PREFIX

REDACTED = "REDACTED"
SECRET_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "auth",
        "authorization",
    }
)
_TOKEN = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """`text` (a request target or any log text) with secrets replaced by REDACTED."""
    text = _TOKEN.sub(PREFIX + REDACTED, text)
    path, sep, query = text.partition("?")
    if not sep:
        return text
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and (
            unquote_plus(name).strip().lower() in SECRET_PARAMS or PREFIX in unquote_plus(value)
        ):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Redacts a record's message and its string arguments (keeping their number and order,
    which uvicorn's access formatter unpacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: _redacted(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        return True


def configure_logging(level: str) -> dict[str, Any]:
    """Set up the root logger at `level`, redacted; return uvicorn's log config, redacted too."""
    from uvicorn.config import LOGGING_CONFIG

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
