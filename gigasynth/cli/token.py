"""`gigasynth token create`: a new API token for the service, printed once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="manage the service's API tokens")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a token and print it (only this once)",
        description="The token is stored hashed in the data dir's job store; keep the "
                    "printed value, it cannot be shown again.")
    create.add_argument("--name", required=True, help="who or what uses the token (unique)")
    create.add_argument("--data-dir", type=Path,
                        help="the service's data dir (GIGASYNTH_DATA_DIR, default "
                             "./gigasynth-data); the store is in GIGASYNTH_STORE_DIR if set")
    create.add_argument("--max-megapixels", type=float, default=None,
                        help="largest job this token may submit, in megapixels (default 1000)")
    create.add_argument("--max-concurrent", type=int, default=None,
                        help="jobs this token may have queued or running at once (default 2)")
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    from service.config import load_config
    from service.store import JobStore
    from service.tokens import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_MEGAPIXELS, create_token

    config = load_config().with_overrides(data_dir=args.data_dir)
    store = JobStore(config.store_file)
    try:
        secret, record = create_token(
            store, args.name,
            args.max_megapixels if args.max_megapixels is not None else DEFAULT_MAX_MEGAPIXELS,
            args.max_concurrent if args.max_concurrent is not None else DEFAULT_MAX_CONCURRENT,
        )
    finally:
        store.close()
    print(secret)
    print(f"token {record.name!r}: up to {record.max_megapixels:g} megapixels per job, "
          f"{record.max_concurrent} at a time; stored hashed in {config.store_file}, "
          "not shown again",
          file=sys.stderr)
    return 0
