"""`python -m cluster provision`: what the dynamic provider does on `pulumi up`, by hand, with readable output.

Where the cluster is, one of:
  --stack NAME                 the plan of Pulumi.NAME.yaml + passwords from `pulumi stack output --show-secrets`
  --harness DIR                a test-harness directory (its state.json)
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
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

from cluster.config import ConfigError, load_config
from cluster.config.sources import project_root, read_stack_file, stack_file
from cluster.plan import build_plan
from cluster.provision import (
    ClusterNotHealthy,
    ClusterTarget,
    MemberTarget,
    ProvisionError,
    ProvisionResult,
    check,
    citus,
    migrations,
    provision,
    read_migrations,
    target_from_plan,
)
from cluster.provision.health import rest_json


class UsageError(Exception):
    """The command line or its environment cannot name a cluster; exit 2."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "provision", help="check, provision or rebalance a running cluster", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed Pulumi stack (needs the pulumi CLI)")
    where.add_argument("--harness", type=Path, metavar="DIR", help="a tests/harness directory")
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
    try:
        target = resolve_target(args)
        if args.check:
            return _check(target, args.json)
        if not target.app_password:
            raise UsageError("provisioning sets the application role's password: export CITUS_APP_PASSWORD "
                             "(or use --check to only report)")
        result = provision(target, read_migrations(project_root() / "sql"), rebalance=args.rebalance,
                           health_timeout=args.timeout)
        print(json.dumps(result.outputs() | {"registered": result.registered, "newly_applied":
                                             result.newly_applied, "rebalance": result.rebalance}, indent=2)
              if args.json else format_result(result))
        return 0
    except UsageError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 2
    except (ClusterNotHealthy, ProvisionError, psycopg.Error) as exc:
        print(f"provision: {redact(str(exc))}", file=sys.stderr)
        return 1


def resolve_target(args: argparse.Namespace) -> ClusterTarget:
    if args.patroni and not args.dsn:
        raise UsageError("--patroni goes with --dsn")
    if args.stack:
        return stack_target(args.stack)
    if args.harness:
        return harness_target(args.harness)
    if not args.patroni:
        raise UsageError("--dsn needs at least one --patroni GROUP=URL (one per member)")
    return manual_target(args.dsn, args.patroni, args.app_user, os.environ.get("CITUS_APP_PASSWORD", ""))


def harness_target(directory: Path) -> ClusterTarget:
    """The target a tests/harness directory recorded in its state.json."""
    state = directory / "state.json"
    if not state.exists():
        raise UsageError(f"{state} not found: is {directory} a harness directory?")
    return ClusterTarget.from_dict(json.loads(state.read_text())["target"])


def stack_target(stack: str) -> ClusterTarget:
    try:
        loaded = load_config(*read_stack_file(stack_file(stack)))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    outputs = pulumi_outputs(stack)
    missing = [k for k in ("rw_dsn", "app_dsn") if k not in outputs]
    if missing:
        raise UsageError(f"stack {stack} has no {', '.join(missing)} output: was `make up` run for it?")
    return target_from_plan(build_plan(loaded.config), password_of(outputs["rw_dsn"]), password_of(outputs["app_dsn"]))


def pulumi_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --show-secrets --json`; the one place this command runs pulumi."""
    if shutil.which("pulumi") is None:
        raise UsageError("the Pulumi CLI is not on PATH; use --dsn URL --patroni GROUP=URL … instead")
    done = subprocess.run(["pulumi", "stack", "output", "--show-secrets", "--json", "--stack", stack],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise UsageError(f"`pulumi stack output --stack {stack}` failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def password_of(dsn: str) -> str:
    return unquote(urlsplit(dsn).password or "")


def manual_target(dsn: str, patroni: list[str], app_user: str, app_password: str) -> ClusterTarget:
    members = []
    for spec in patroni:
        group, sep, url = spec.partition("=")
        if not sep or not group.isdigit():
            raise UsageError(f"--patroni {spec!r}: expected GROUP=URL, e.g. 0=http://127.0.0.1:18008")
        url = url.rstrip("/")
        name, host, port = member_identity(url)
        parts = urlsplit(dsn)
        netloc = parts.netloc.rsplit("@", 1)[0] + f"@{host}:{port}"
        members.append(MemberTarget(name, int(group), url, urlunsplit(parts._replace(netloc=netloc)), host, port))
    database = urlsplit(dsn).path.lstrip("/") or "postgres"
    return ClusterTarget(rw_dsn=dsn, members=tuple(members), database=database, app_user=app_user,
                         app_password=app_password)


def member_identity(url: str) -> tuple[str, str, int]:
    """(name, host, port) of the member behind a Patroni URL, from its own /patroni and its group's /cluster."""
    try:
        name = rest_json(f"{url}/patroni", timeout=5)["patroni"]["name"]
        member = next(m for m in rest_json(f"{url}/cluster", timeout=5)["members"] if m["name"] == name)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise UsageError(f"cannot read member identity from {url}/patroni and /cluster: {exc}") from None
    return name, member["host"], int(member["port"])


def _check(target: ClusterTarget, as_json: bool) -> int:
    report = check(target)
    state: dict[str, Any] = {"healthy": report.healthy, "leaders": report.leaders, "problems": report.problems}
    if report.healthy:
        with citus.connect(target.rw_dsn) as conn:
            state["citus_version"] = citus.require_citus(conn)
            state["nodes"] = [{"group": r.group, "node": f"{r.host}:{r.port}", "role": r.role, "active": r.active}
                              for r in citus.nodes(conn)]
            done = migrations.applied(conn)
            pending = [m.name for m in read_migrations(project_root() / "sql") if m.name not in done]
            state |= {"applied_migrations": sorted(done), "pending_migrations": pending,
                      "shard_counts": citus.shard_counts(conn)}
    print(json.dumps(state, indent=2) if as_json else format_check(state))
    return 0 if report.healthy else 1


def format_result(result: ProvisionResult) -> str:
    lines = [f"Citus {result.citus_version}", *_node_lines(result.nodes)]
    lines.append(f"registered now: {', '.join(result.registered) or 'nothing (Patroni had done it)'}")
    lines.append(f"migrations: {len(result.applied)} applied"
                 + (f", this run: {', '.join(result.newly_applied)}" if result.newly_applied else ", none new"))
    lines.append(f"rebalance: {result.rebalance}")
    lines += [f"  {node}: {count} shards" for node, count in result.shard_counts.items()]
    return "\n".join(lines)


def format_check(state: dict[str, Any]) -> str:
    if not state["healthy"]:
        return "NOT HEALTHY\n" + "\n".join(f"  - {p}" for p in state["problems"])
    lines = [f"healthy; Citus {state['citus_version']}; leaders: "
             + ", ".join(f"group {g}: {n}" for g, n in sorted(state["leaders"].items())), *_node_lines(state["nodes"])]
    lines.append(f"migrations applied: {len(state['applied_migrations'])}; pending: "
                 f"{', '.join(state['pending_migrations']) or 'none'}")
    lines += [f"  {node}: {count} shards" for node, count in state["shard_counts"].items()]
    return "\n".join(lines)


def _node_lines(nodes: list[dict[str, Any]]) -> list[str]:
    rows = [f"  {'group':>5}  {'node':<28} {'role':<10} active"]
    rows += [f"  {n['group']:>5}  {n['node']:<28} {n['role']:<10} {n['active']}" for n in nodes]
    return rows


def redact(text: str) -> str:
    """Hide the password of any URL in `text` (errors may quote a DSN)."""
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
