"""`python -m cluster local up [--config FILE] [--dir DIR] [--namespaces] [--cpu-per-host CORES]` (prints JSON,
leaves it running) /
`local down --dir DIR` / `local cleanup --dir DIR` (stop and remove namespaces, keep the directory; idempotent).

A local cluster is the rendered cluster as processes on 127.0.0.1 (see cluster/local/harness.py): what the tests
and benchmarks run, and a way to try the product without Docker.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from cluster.local.harness import Harness, harness_config


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("local", help="run the cluster as local processes (no Docker)", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="local_command", required=True)
    up = sub.add_parser("up", help="start a cluster from rendered files and leave it running")
    up.add_argument("--config", type=Path, help="YAML overrides of the local defaults (stack-file shape, no prefix)")
    up.add_argument("--dir", type=Path, help="where to put data, configs, logs and state.json (default: a temp dir)")
    up.add_argument("--timeout", type=float, default=180.0)
    up.add_argument("--no-citus", action="store_true", help="plain Patroni even where the citus extension exists")
    up.add_argument("--namespaces", action="store_true",
                    help="every member and etcd member on a host of its own (network namespace; needs root)")
    up.add_argument("--no-tls", action="store_true",
                    help="measurement only: clients, replication and Citus without TLS (to price TLS)")
    up.add_argument("--cpu-per-host", type=float, metavar="CORES",
                    help="every database member (with its PgBouncer and exporter) on a host of CORES cores: a "
                         "cgroup v1 cpu quota per member (needs /sys/fs/cgroup/cpu writable); sets "
                         "resources.database.cpus, which the derived settings follow")
    down = sub.add_parser("down", help="stop everything a previous `up` started and delete its directory")
    down.add_argument("--dir", type=Path, required=True)
    down.add_argument("--keep", action="store_true", help="keep the directory (data and logs)")
    cleanup = sub.add_parser("cleanup", help="stop what the state file records and remove its namespaces; "
                             "keep the directory (safe to repeat, e.g. after a failed test)")
    cleanup.add_argument("--dir", type=Path, required=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.local_command == "up":
        overrides = yaml.safe_load(args.config.read_text()) if args.config else {}
        harness = Harness.create(harness_config(overrides or {}, args.cpu_per_host), args.dir,
                                 citus=not args.no_citus, namespaces=args.namespaces, tls=not args.no_tls,
                                 cpu_per_host=args.cpu_per_host)
        harness.up(args.timeout)
        print(json.dumps(harness.info(), indent=2))
        return 0
    if args.local_command == "cleanup":
        found = Harness.cleanup(args.dir)
        print(json.dumps({"dir": str(args.dir), "cleaned": found}))
        return 0
    Harness.load(args.dir).down(remove=not args.keep)  # refuses a directory without a state file
    return 0
