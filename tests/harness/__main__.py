"""`python -m tests.harness up --config FILE --dir DIR` (prints JSON, leaves it running) / `down --dir DIR`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from cluster.config import ConfigError
from tests.harness.cluster import STATE_FILE, Harness, harness_config
from tests.harness.processes import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster from rendered files and leave it running")
    up.add_argument("--config", type=Path, help="YAML overrides of the harness defaults (stack-file shape, no prefix)")
    up.add_argument("--dir", type=Path, help="where to put data, configs, logs and state.json (default: a temp dir)")
    up.add_argument("--timeout", type=float, default=180.0)
    up.add_argument("--no-citus", action="store_true", help="plain Patroni even where the citus extension exists")
    down = sub.add_parser("down", help="stop everything a previous `up` started and delete its directory")
    down.add_argument("--dir", type=Path, required=True)
    down.add_argument("--keep", action="store_true", help="keep the directory (data and logs)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            overrides = yaml.safe_load(args.config.read_text()) if args.config else {}
            harness = Harness.create(harness_config(overrides or {}), args.dir, citus=not args.no_citus)
            harness.up(args.timeout)
            print(json.dumps(harness.info(), indent=2))
            return 0
        if not (args.dir / STATE_FILE).exists():
            print(f"no harness at {args.dir} ({STATE_FILE} missing)", file=sys.stderr)
            return 1
        Harness.load(args.dir).down(remove=not args.keep)
        return 0
    except (HarnessError, ConfigError) as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
