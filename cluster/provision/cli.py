"""`python -m cluster provision`: what the dynamic provider does on `pulumi up`, by hand, with readable output.

Where the cluster is, one of:
  --stack NAME                 the plan of Pulumi.NAME.yaml + passwords from `pulumi stack output --show-secrets`
  --harness DIR                a local cluster's directory (`python -m cluster local up`)
  --dsn URL --patroni G=URL…   by hand: the rw DSN and each member's Patroni REST URL with its Citus group
                               (the app role's password comes from CITUS_APP_PASSWORD, never from a flag)
What to do: provision (default: health, registration, extensions, schema, app role), --check (report only,
exit 1 when unhealthy), --rebalance (provision, then spread shards whatever changed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.config.sources import project_root
from cluster.errors import UsageError
from cluster.provision import ProvisionResult, check, citus, migrations, provision, read_migrations
from cluster.provision.target import ClusterTarget, resolve_target


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "provision", help="check, provision or rebalance a running cluster", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed Pulumi stack (needs the pulumi CLI)")
    where.add_argument("--harness", type=Path, metavar="DIR",
                       help="a local cluster's directory (`python -m cluster local up --dir`)")
    where.add_argument("--dsn", help="read-write DSN of the coordinator (through HAProxy)")
    parser.add_argument("--patroni", action="append", default=[], metavar="GROUP=URL",
                        help="with --dsn: a member's Patroni REST URL and its Citus group; repeat per member")
    parser.add_argument("--app-user", default="app", help="with --dsn: the application role (default app)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report only; exit 1 when the cluster is unhealthy")
    mode.add_argument("--rebalance", action="store_true", help="provision, then rebalance shards")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)
    target = resolve_target(stack=args.stack, local=args.harness, dsn=args.dsn, patroni=args.patroni,
                            app_user=args.app_user, app_password=os.environ.get("CITUS_APP_PASSWORD", ""))
    if args.check:
        return _check(target, args.json, lambda: backups_of(args))
    if not target.app_password:
        raise UsageError("provisioning sets the application role's password: export CITUS_APP_PASSWORD "
                         "(or use --check to only report)")
    result = provision(target, read_migrations(project_root() / "sql"), rebalance=args.rebalance,
                       health_timeout=args.timeout)
    print(json.dumps(result.outputs() | {"registered": result.registered, "newly_applied":
                                         result.newly_applied, "rebalance": result.rebalance,
                                         "passwords_changed": result.passwords_changed,
                                         "app_tables": result.app_tables,
                                         "pending_restart": result.pending_restart}, indent=2)
          if args.json else format_result(result))
    return 0


def backups_of(args: argparse.Namespace) -> Any:
    """Where pgBackRest can be run for the cluster (named by --stack or --harness), for the repository check."""
    if args.dsn:
        return None
    from cluster.backup.cli import resolve_scope

    return resolve_scope(args.stack, args.harness)


def _check(target: ClusterTarget, as_json: bool, backups: Callable[[], Any] = lambda: None) -> int:
    report = check(target)
    state: dict[str, Any] = {"healthy": report.healthy, "leaders": report.leaders, "problems": report.problems}
    if report.leaders:  # archive health of whichever primaries answer, even while the cluster is unhealthy
        from cluster.backup.health import archive_report

        state["archive"] = archive_report(target, report.leaders, backups())
    if report.healthy:
        with citus.connect(target.rw_dsn) as conn:
            state["citus_version"] = citus.require_citus(conn)
            state["nodes"] = [r.summary() for r in citus.nodes(conn)]
            done = migrations.applied(conn)
            pending = [m.name for m in read_migrations(project_root() / "sql") if m.name not in done]
            state |= {"applied_migrations": sorted(done), "pending_migrations": pending,
                      "shard_counts": citus.shard_counts(conn)}
    print(json.dumps(state, indent=2) if as_json else format_check(state))
    return 0 if report.healthy and state.get("archive", {}).get("ok", True) else 1


def format_result(result: ProvisionResult) -> str:
    lines = [f"Citus {result.citus_version}", *_node_lines(result.nodes)]
    lines.append(f"registered now: {', '.join(result.registered) or 'nothing (Patroni had done it)'}")
    lines.append(f"migrations: {len(result.applied)} applied"
                 + (f", this run: {', '.join(result.newly_applied)}" if result.newly_applied else ", none new"))
    lines.append(f"rebalance: {result.rebalance}")
    lines += [f"  {node}: {count} shards" for node, count in result.shard_counts.items()]
    lines.append(f"passwords changed: {', '.join(result.passwords_changed) or 'none'}")
    lines.append(f"application role may write: {', '.join(result.app_tables) or 'nothing yet'}")
    if result.pending_restart:
        lines.append(f"restart pending (a DCS-only setting changed): {', '.join(result.pending_restart)}; restart "
                     "them one at a time, replicas first (`patronictl restart --pending`)")
    return "\n".join(lines)


def format_check(state: dict[str, Any]) -> str:
    archive = state.get("archive", {})
    alarm = "".join(f"\n!! {p}" for p in archive.get("problems", []))
    if not state["healthy"]:
        return "NOT HEALTHY\n" + "\n".join(f"  - {p}" for p in state["problems"]) + alarm
    lines = [f"healthy; Citus {state['citus_version']}; leaders: "
             + ", ".join(f"group {g}: {n}" for g, n in sorted(state["leaders"].items())), *_node_lines(state["nodes"])]
    lines.append(f"migrations applied: {len(state['applied_migrations'])}; pending: "
                 f"{', '.join(state['pending_migrations']) or 'none'}")
    lines += [f"  {node}: {count} shards" for node, count in state["shard_counts"].items()]
    if archive:
        lines.append("archive: " + ("ok" if archive["ok"] else "FAILING"))
        lines += [f"  group {a['group']} {a['member']}: {a['archived']} archived, {a['failed']} failed, last "
                  f"{a['last_archived_wal']} ({a['last_archived_age_s']} s ago)" for a in archive["primaries"]]
    return "\n".join(lines) + alarm


def _node_lines(nodes: list[dict[str, Any]]) -> list[str]:
    rows = [f"  {'group':>5}  {'node':<28} {'role':<10} active"]
    rows += [f"  {n['group']:>5}  {n['node']:<28} {n['role']:<10} {n['active']}" for n in nodes]
    return rows
