"""`python -m cluster status`: every group and member as Patroni sees it, HAProxy's backends as HAProxy sees them,
pg_dist_node against Patroni's leaders, shards per group with their skew, and what is wrong, in words.

Where the cluster is, one of:
  --stack NAME    a deployed stack (its plan + `pulumi stack output --show-secrets`, which holds the stats password)
  --harness DIR   a local cluster's directory (`python -m cluster local up`)
Exit status: 0 when nothing is wrong (warnings allowed), 1 when anything is (each error is listed), 2 when the
cluster cannot be named. --watch SECONDS redraws until Ctrl-C and exits with the last look's status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster.errors import UsageError
from cluster.provision.target import resolve_target
from cluster.render.haproxy import LEADER_READS_BACKEND, LEADERS_BACKEND, PRIMARY_BACKEND, REPLICAS_BACKEND
from cluster.status.diagnose import Diagnosis, Facts, MemberFacts, diagnose
from cluster.status.gather import gather

# How the screen names HAProxy's backends: the listener each serves.
BACKEND_LABELS = {
    PRIMARY_BACKEND: "rw", REPLICAS_BACKEND: "ro", LEADER_READS_BACKEND: "ro-leader", LEADERS_BACKEND: "any",
}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "status", help="one screen: members, HAProxy, pg_dist_node, shards, and what is wrong",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed Pulumi stack (needs the pulumi CLI)")
    where.add_argument("--harness", type=Path, metavar="DIR", help="a local cluster's directory")
    parser.add_argument("--json", action="store_true", help="print facts, findings and skew as JSON")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="redraw every SECONDS until Ctrl-C")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch {args.watch}: expected a positive number of seconds")
    target = resolve_target(stack=args.stack, local=args.harness)
    status = 0
    while True:
        facts = gather(target)
        diagnosis = diagnose(facts)
        status = 0 if diagnosis.healthy else 1
        text = json.dumps(as_document(facts, diagnosis), indent=2) if args.json else format_screen(facts, diagnosis)
        if args.watch is None:
            print(text)
            return status
        print(("\x1b[H\x1b[2J" if sys.stdout.isatty() else "") + text, flush=True)
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return status


def as_document(facts: Facts, diagnosis: Diagnosis) -> dict[str, Any]:
    return {
        "healthy": diagnosis.healthy,
        "findings": [asdict(f) for f in diagnosis.findings],
        "skew": asdict(diagnosis.skew) if diagnosis.skew else None,
        "facts": asdict(facts),
    }


def format_screen(facts: Facts, diagnosis: Diagnosis, now: datetime | None = None) -> str:
    """The whole picture as text: a headline, one row per member, shards, then the findings."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    warnings = len(diagnosis.findings) - diagnosis.errors
    verdict = "HEALTHY" if diagnosis.healthy else f"NOT HEALTHY ({diagnosis.errors} errors)"
    lines = [f"{verdict}; {warnings} warnings    {stamp}", ""]
    header = ("GROUP", "MEMBER", "ROLE", "STATE", "TL", "LAG", "HAPROXY", "PG_DIST_NODE")
    rows = [header, *(member_row(m, facts) for m in facts.members)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += ["", shards_line(facts, diagnosis), ""]
    for severity in ("error", "warning"):
        found = [f for f in diagnosis.findings if f.severity == severity]
        if found:
            lines.append(f"{severity.upper()}S")
            lines += [f"  {f.subject}: {f.text}" for f in found]
    if not diagnosis.findings:
        lines.append("Nothing wrong.")
    return "\n".join(lines)


def member_row(m: MemberFacts, facts: Facts) -> tuple[str, ...]:
    if not m.reachable:
        role, state, timeline, lag = "?", "DOWN", "", ""
    else:
        role, state = m.role or "?", m.state or "?"
        timeline = "" if m.timeline is None else str(m.timeline)
        lag = "" if m.leads or m.lag is None else _size(m.lag)
    return (str(m.group), m.name, role, state, timeline, lag, _haproxy_cell(m, facts), _node_cell(m, facts))


def _haproxy_cell(m: MemberFacts, facts: Facts) -> str:
    if facts.haproxy is None:
        return "?"
    seen = [f"{BACKEND_LABELS.get(s.backend, s.backend)}:{s.status}" for s in facts.haproxy if s.server == m.name]
    return " ".join(seen) or "-"


def _node_cell(m: MemberFacts, facts: Facts) -> str:
    if facts.nodes is None:
        return "?"
    rows = [n for n in facts.nodes if f"{n.host}:{n.port}" == m.address]
    return " ".join(n.role + ("" if n.active else " (inactive)") for n in rows) or "not registered"


def shards_line(facts: Facts, diagnosis: Diagnosis) -> str:
    if facts.shards is None:
        return "SHARDS  unknown"
    groups = "   ".join(f"group {s.group}: {s.shards} ({_size(s.bytes)})" for s in facts.shards)
    skew = diagnosis.skew
    by_size = "unknown while a primary is down" if skew is None or skew.bytes is None else f"{skew.bytes:.0%}"
    spread = f"   spread: count {skew.shards:.0%}, bytes {by_size}" if skew else ""
    return f"SHARDS  {groups or 'none'}{spread}"


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return f"{value} B"
