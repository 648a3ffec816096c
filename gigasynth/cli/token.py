"""`gigasynth token create|list|revoke`: the service's API tokens.

A token is printed once, at creation; the store keeps only its hash, so `list` shows
names, ids, dates and state, never a secret. Revocation and expiry are read by a running
server on every request: no restart is needed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gigasynth.errors import GigasynthError

if TYPE_CHECKING:
    from gigasynth_service.config import ServiceConfig
    from gigasynth_service.store import JobStore

_DURATION = re.compile(r"([0-9]{1,7})([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="manage the service's API tokens")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--data-dir",
        type=Path,
        help="the service's data dir (GIGASYNTH_DATA_DIR, default "
        "./gigasynth-data); the store is in GIGASYNTH_STORE_DIR if set",
    )
    create = actions.add_parser(
        "create",
        parents=[where],
        help="create a token and print it (only this once)",
        description="The token is stored hashed in the data dir's job store; keep the "
        "printed value, it cannot be shown again.",
    )
    create.add_argument("--name", required=True, help="who or what uses the token (unique)")
    create.add_argument(
        "--max-megapixels",
        type=float,
        default=None,
        help="largest job this token may submit, in megapixels (default 1000)",
    )
    create.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="jobs this token may have queued or running at once (default 2)",
    )
    lifetime = create.add_mutually_exclusive_group()
    lifetime.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="the token stops working after this long: N followed by "
        "s, m, h, d or w (e.g. 30d); default: never",
    )
    lifetime.add_argument(
        "--expires",
        metavar="ISO8601",
        help="the token stops working at this time (e.g. 2027-01-31T18:00:00+01:00; no zone: UTC)",
    )
    create.set_defaults(func=run_create)
    listing = actions.add_parser(
        "list",
        parents=[where],
        help="list tokens: name, id, created, expiry, state",
        description="Secrets are never shown (only their hashes are stored).",
    )
    listing.set_defaults(func=run_list)
    revoke = actions.add_parser(
        "revoke",
        parents=[where],
        help="revoke a token by name or id, at once",
        description="The token and every link it signed stop working immediately, also "
        "for a running server. Its jobs and slides are kept.",
    )
    revoke.add_argument("token", metavar="NAME|ID", help="the token's name or id")
    revoke.set_defaults(func=run_revoke)


def expiry(expires_in: str | None, expires: str | None, now: float) -> float | None:
    """Unix seconds from --expires-in DURATION or --expires ISO8601 (None: never)."""
    if expires_in is not None:
        match = _DURATION.fullmatch(expires_in.strip())
        if match is None:
            raise GigasynthError(
                f"--expires-in {expires_in!r} is not a duration such as 90m, 12h, 30d or 2w"
            )
        return now + int(match.group(1)) * _UNIT_S[match.group(2)]
    if expires is not None:
        try:
            when = datetime.fromisoformat(expires.strip())
        except ValueError:
            raise GigasynthError(
                f"--expires {expires!r} is not an ISO 8601 time such as 2027-01-31T18:00:00Z"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    return None


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_store(args: argparse.Namespace) -> tuple[ServiceConfig, JobStore]:
    from gigasynth_service.config import load_config
    from gigasynth_service.store import JobStore

    config = load_config().with_overrides(data_dir=args.data_dir)
    return config, JobStore(config.store_file)


def run_create(args: argparse.Namespace) -> int:
    from gigasynth_service.tokens import (
        DEFAULT_MAX_CONCURRENT,
        DEFAULT_MAX_MEGAPIXELS,
        create_token,
    )

    expires = expiry(args.expires_in, args.expires, time.time())
    config, store = _open_store(args)
    try:
        secret, record = create_token(
            store,
            args.name,
            args.max_megapixels if args.max_megapixels is not None else DEFAULT_MAX_MEGAPIXELS,
            args.max_concurrent if args.max_concurrent is not None else DEFAULT_MAX_CONCURRENT,
            expires,
        )
    finally:
        store.close()
    print(secret)
    until = f", until {_when(record.expires)}" if record.expires is not None else ""
    print(
        f"token {record.name!r} (id {record.id}): up to {record.max_megapixels:g} megapixels "
        f"per job, {record.max_concurrent} at a time{until}; stored hashed in "
        f"{config.store_file}, not shown again",
        file=sys.stderr,
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from gigasynth_service.tokens import token_problem

    _, store = _open_store(args)
    try:
        tokens = store.tokens()
    finally:
        store.close()
    rows = [("NAME", "ID", "CREATED", "EXPIRES", "STATE")]
    now = time.time()
    for t in tokens:
        problem = token_problem(t, now)
        state = (
            "active"
            if problem is None
            else (f"revoked {_when(t.revoked)}" if t.revoked is not None else problem)
        )
        rows.append((t.name, t.id, _when(t.created), _when(t.expires), state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from gigasynth_service.tokens import revoke_token

    _, store = _open_store(args)
    try:
        record = revoke_token(store, args.token)
    finally:
        store.close()
    print(
        f"token {record.name!r} (id {record.id}) revoked at {_when(record.revoked)}; its "
        "requests and signed links are refused from now on",
        file=sys.stderr,
    )
    return 0
