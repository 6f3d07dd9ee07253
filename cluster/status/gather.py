"""The I/O half of `status`: read every fact `diagnose` judges, and never fail on a broken cluster (a part that
does not answer becomes a fact too). Each read is bounded by a short time-out so a frozen member cannot hang
the screen.

- members: each planned member's own /patroni (is it there?) and its group's /cluster (role, timeline, lag);
- HAProxy: the stats page as CSV (`<stats url>;csv`), with the stats user and password;
- Citus: pg_dist_node and distributed shard placements per group, on the coordinator leader directly (so a
  broken HAProxy does not hide Citus's state).
"""

from __future__ import annotations

import csv
import io
import urllib.error
import urllib.request
from typing import Any

import psycopg

from cluster.plan import STATS_USER
from cluster.provision import citus
from cluster.provision.rest import basic_auth, rest_json, tls_context
from cluster.provision.target import ClusterTarget, MemberTarget
from cluster.status.diagnose import Facts, MemberFacts, ServerFacts, ShardFacts

TIMEOUT = 2.0
READ_ERRORS = (OSError, urllib.error.URLError, ValueError)

# Distributed shard placements and their sizes per group, primaries only (citus_shards lists a group's
# secondaries too, with the same shards).
SHARDS_SQL = """
SELECT n.groupid, count(*), coalesce(sum(s.shard_size), 0)::bigint
FROM citus_shards s
JOIN pg_dist_node n ON n.nodename = s.nodename AND n.nodeport = s.nodeport AND n.noderole = 'primary'
WHERE s.citus_table_type = 'distributed'
GROUP BY n.groupid
"""


def gather(target: ClusterTarget, timeout: float = TIMEOUT) -> Facts:
    members = tuple(m for group in target.groups
                    for m in _group_facts(target.members_of(group), timeout, target.ca_file))
    servers, haproxy_error = _haproxy(target, timeout)
    leader = next((m for m in members if m.group == 0 and m.running and m.leads), None)
    dsn = next((t.dsn for t in target.members if leader and t.name == leader.name), target.rw_dsn)
    nodes, citus_error, shards, shards_error = _citus(dsn, timeout)
    return Facts(members, servers, haproxy_error, nodes, citus_error, shards, shards_error)


# ---- Patroni -------------------------------------------------------------------------------------------------
def _group_facts(members: list[MemberTarget], timeout: float, ca_file: str | None) -> list[MemberFacts]:
    own: dict[str, dict[str, Any] | str] = {}
    for m in members:
        try:
            own[m.name] = rest_json(f"{m.patroni_url}/patroni", timeout, ca_file)
        except READ_ERRORS as exc:
            own[m.name] = str(getattr(exc, "reason", exc))
    view = _cluster_view(members, own, timeout, ca_file)
    return [member_facts(m, own[m.name], view.get(m.name, {})) for m in members]


def _cluster_view(
    members: list[MemberTarget], own: dict[str, Any], timeout: float, ca_file: str | None
) -> dict[str, dict[str, Any]]:
    """The group's /cluster (role, timeline, lag of each member) from the first member that answers."""
    for m in members:
        if isinstance(own[m.name], dict):
            try:
                seen = rest_json(f"{m.patroni_url}/cluster", timeout, ca_file)["members"]
                return {entry["name"]: entry for entry in seen}
            except (*READ_ERRORS, KeyError):
                continue
    return {}


def member_facts(m: MemberTarget, own: dict[str, Any] | str, seen: dict[str, Any]) -> MemberFacts:
    """One member from its own /patroni answer (or the error string) and its entry in the group's /cluster."""
    base = {"name": m.name, "group": m.group, "address": f"{m.host}:{m.port}"}
    if isinstance(own, str):
        return MemberFacts(**base, reachable=False, error=own, role=seen.get("role"))
    lag = seen.get("lag")
    return MemberFacts(
        **base,
        reachable=True,
        state=own.get("state"),
        role=seen.get("role") or ("leader" if own.get("role") in ("primary", "master") else own.get("role")),
        timeline=own.get("timeline"),
        lag=lag if isinstance(lag, int) else None,
        paused=bool(own.get("pause")),
        pending_restart=bool(own.get("pending_restart")),
    )


# ---- HAProxy -------------------------------------------------------------------------------------------------
def _haproxy(target: ClusterTarget, timeout: float) -> tuple[tuple[ServerFacts, ...] | None, str | None]:
    if not target.stats_url:
        return None, "no stats URL known for this cluster"
    request = basic_auth(urllib.request.Request(target.stats_url.rstrip("/") + "/;csv"), STATS_USER,
                         target.stats_password)
    try:
        context = tls_context(target.ca_file) if target.stats_url.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return parse_stats_csv(response.read().decode()), None
    except urllib.error.HTTPError as exc:
        return None, f"{target.stats_url} answered {exc.code} {exc.reason}"
    except READ_ERRORS as exc:
        return None, f"{target.stats_url}: {getattr(exc, 'reason', exc)}"


def parse_stats_csv(text: str) -> tuple[ServerFacts, ...]:
    """Server lines of HAProxy's `show stat` CSV (the header starts with '# '); frontends and backend totals
    are skipped."""
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return tuple(
        ServerFacts(row["pxname"], row["svname"], row["status"])
        for row in rows
        if row.get("svname") not in (None, "FRONTEND", "BACKEND")
    )


# ---- Citus ---------------------------------------------------------------------------------------------------
def _citus(dsn: str, timeout: float) -> tuple[Any, str | None, Any, str | None]:
    """(pg_dist_node rows, error, shards per group, error): the shard sizes need every worker leader to answer,
    so they can fail alone."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, int(timeout))) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 2000)}")
            nodes = tuple(citus.nodes(conn))
            try:
                rows = conn.execute(SHARDS_SQL).fetchall()
            except psycopg.Error as exc:
                return nodes, None, None, str(exc).strip().splitlines()[0]
    except psycopg.Error as exc:
        return None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, None, None
    counts = {int(g): (int(n), int(size)) for g, n, size in rows}
    holders = sorted({r.group for r in nodes if r.role == "primary" and r.should_have_shards})
    shards = tuple(ShardFacts(g, *counts.get(g, (0, 0))) for g in holders)
    return nodes, None, shards, None
