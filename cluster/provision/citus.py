"""Citus metadata: the extension, node registration, shard placement (roles: cluster.provision.roles).

Patroni's Citus mode already registers each worker group's leader (and its replicas as secondaries) from the
coordinator leader every heartbeat; here we confirm it, add what is missing, and do what Patroni does not:
extensions, rebalancing onto new groups, draining groups before they go.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from cluster.errors import ClusterError
from cluster.provision.target import ClusterTarget

log = logging.getLogger("cluster.provision")


class ProvisionError(ClusterError):
    """A provisioning step cannot go on; the message says what was expected, found, and what to do."""


@dataclass(frozen=True)
class NodeRow:
    nodeid: int
    group: int
    host: str
    port: int
    role: str
    active: bool
    should_have_shards: bool

    def summary(self) -> dict[str, object]:
        """What outputs and reports show of a registered node."""
        return {"group": self.group, "node": f"{self.host}:{self.port}", "role": self.role, "active": self.active}


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def require_citus(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    if row is None:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'citus'").fetchone()
        where = "is installed but not created" if available else "is not installed in this PostgreSQL"
        raise ProvisionError(
            f"the citus extension {where}: expected Citus on the coordinator (Patroni's Citus mode creates it). "
            "Use the project's image (citusdata/citus based) or install Citus."
        )
    return str(row[0])


def nodes(conn: psycopg.Connection) -> list[NodeRow]:
    rows = conn.execute(
        "SELECT nodeid, groupid, nodename, nodeport, noderole::text, isactive, shouldhaveshards "
        "FROM pg_dist_node ORDER BY groupid, nodeid"
    ).fetchall()
    return [NodeRow(*row) for row in rows]


def primaries(conn: psycopg.Connection) -> dict[int, NodeRow]:
    return {row.group: row for row in nodes(conn) if row.role == "primary"}


def register(
    conn: psycopg.Connection, target: ClusterTarget, leaders: dict[int, str], grace: float = 30.0
) -> list[str]:
    """Make pg_dist_node hold every group's current leader as primary and its other members as secondaries;
    returns what this call had to add or fix.

    Patroni registers on its own heartbeat, so give it `grace` seconds before stepping in: two writers
    adding the same node at once would collide.
    """
    expected = {g: next(m for m in target.members if m.name == name) for g, name in leaders.items()}
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (_mismatches(conn, expected) or _missing_secondaries(conn, target, leaders)):
        time.sleep(1)
    changes = []
    for group, member in expected.items():
        row = primaries(conn).get(group)
        if row is not None and (row.host, row.port) == (member.host, member.port):
            continue
        if group == 0:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (member.host, member.port))
        elif row is None:
            conn.execute("SELECT citus_add_node(%s, %s, groupid => %s)", (member.host, member.port, group))
        else:
            conn.execute("SELECT citus_update_node(%s, %s, %s)", (row.nodeid, member.host, member.port))
        changes.append(f"group {group}: registered {member.name} ({member.host}:{member.port})")
    for replica in _missing_secondaries(conn, target, leaders):
        leader = expected[replica.group]
        try:
            conn.execute("SELECT citus_add_secondary_node(%s, %s, %s, %s)",
                         (replica.host, replica.port, leader.host, leader.port))
        except psycopg.errors.UniqueViolation:
            continue  # Patroni added it in the meantime
        changes.append(f"group {replica.group}: registered {replica.name} as secondary")
    for change in changes:
        log.info(change)
    return changes


def _missing_secondaries(conn: psycopg.Connection, target: ClusterTarget, leaders: dict[int, str]) -> list:
    """Members that are not their group's leader and have no pg_dist_node row yet."""
    registered = {(row.host, row.port) for row in nodes(conn)}
    return [m for m in target.members
            if m.group in leaders and m.name != leaders[m.group] and (m.host, m.port) not in registered]


def _mismatches(conn: psycopg.Connection, expected: dict) -> list[int]:
    current = primaries(conn)
    return [
        g for g, m in expected.items() if g not in current or (current[g].host, current[g].port) != (m.host, m.port)
    ]


def ensure_extensions(conn: psycopg.Connection, target: ClusterTarget) -> None:
    """PostGIS on the coordinator; Citus propagates CREATE EXTENSION to every worker."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    missing = conn.execute(
        "SELECT nodename, nodeport FROM run_command_on_workers("
        "$$SELECT count(*) FROM pg_extension WHERE extname = 'postgis'$$) WHERE result <> '1'"
    ).fetchall()
    if missing:
        raise ProvisionError(f"postgis is missing on workers {missing}; check that the image installs PostGIS")


def shard_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Shard placements per primary node (host:port); a group's secondaries hold the same placements."""
    rows = conn.execute(
        "SELECT n.nodename || ':' || n.nodeport, count(*) FROM pg_dist_placement p "
        "JOIN pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {str(node): int(count) for node, count in rows}


def rebalance(conn: psycopg.Connection, mode: str, timeout: float = 1800.0) -> str:
    """Spread shards over every node that should have them; wait, logging progress."""
    job = conn.execute(
        "SELECT citus_rebalance_start(shard_transfer_mode => %s::citus.shard_transfer_mode)", (mode,)
    ).fetchone()
    if job is None or job[0] is None:
        return "nothing to move"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, details = conn.execute("SELECT state::text, details FROM citus_rebalance_status()").fetchone()
        if state in ("finished", "failed", "cancelled"):
            if state != "finished":
                raise ProvisionError(f"rebalance job {job[0]} {state}: {details}")
            return f"rebalance job {job[0]} finished"
        log.info("rebalance job %s %s: %s", job[0], state, (details or {}).get("tasks"))
        time.sleep(2)
    raise ProvisionError(f"rebalance job {job[0]} still running after {timeout:.0f} s; see citus_rebalance_status()")


def drain_group(conn: psycopg.Connection, group: int, mode: str) -> int:
    """Move every shard off `group` to the other groups; returns how many placements it held."""
    remaining_groups = {row.group for row in nodes(conn) if row.group not in (0, group) and row.role == "primary"}
    if not remaining_groups:
        raise ProvisionError(f"refusing to drain worker group {group}: it is the last worker group")
    row = primaries(conn).get(group)
    if row is None:
        return 0
    before = _placements(conn, row)
    conn.execute(
        "SELECT citus_drain_node(%s, %s, shard_transfer_mode => %s::citus.shard_transfer_mode)",
        (row.host, row.port, mode),
    )
    left = _placements(conn, row)
    if left:
        raise ProvisionError(f"drain of worker group {group} left {left} shard placements; not removing it")
    log.info("group %s drained: %s placements moved", group, before)
    return before


def _placements(conn: psycopg.Connection, row: NodeRow) -> int:
    result = conn.execute("SELECT count(*) FROM pg_dist_placement WHERE groupid = %s", (row.group,)).fetchone()
    return int(result[0]) if result else 0


def release_stale_patroni_lock(conn: psycopg.Connection, older_than: float) -> list[int]:
    """End Patroni's pg_dist_node transaction when it outlived its own deadline; returns the ended backends.

    When a worker group's leader shuts down, Patroni on the coordinator opens a transaction that locks
    pg_dist_node until the group has a new leader, and rolls it back after ttl only if another event wakes
    it. A group removed for good never gets a new leader, so the lock stays (measured: 13 minutes, Patroni
    4.1.5) and citus_remove_node waits behind it. Past ttl Patroni would roll back itself; we do it for it.
    """
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'Patroni citus' "
        "AND state = 'idle in transaction' AND query LIKE '%%citus_update_node%%' "
        "AND now() - state_change > make_interval(secs => %s)",
        (older_than,),
    ).fetchall()
    ended = [int(pid) for (pid,) in rows if conn.execute("SELECT pg_terminate_backend(%s::int)", (pid,)).fetchone()[0]]
    if ended:
        log.warning("ended Patroni's stale pg_dist_node transaction (backend %s) held past ttl", ended)
    return ended


def remove_group(conn: psycopg.Connection, group: int) -> list[str]:
    """Unregister every node of a drained group (primary and secondaries)."""
    removed = []
    for row in (r for r in nodes(conn) if r.group == group):
        if row.role == "primary" and _placements(conn, row):
            raise ProvisionError(f"worker group {group} still holds shards; drain it before removing it")
        conn.execute("SELECT citus_remove_node(%s, %s)", (row.host, row.port))
        removed.append(f"{row.host}:{row.port}")
    return removed
