"""Restore every group of a cluster to the same restore point, as a new cluster under Patroni.

How: each group's first member bootstraps through Patroni's custom bootstrap (`bootstrap.method: pgbackrest`):
Patroni runs `pgbackrest restore` into the empty data directory, starts PostgreSQL with recovery_target_name
set to the point and recovery_target_action promote, waits for the promotion, and only then takes the group's
leader key; the other members then clone it as usual (from the new cluster's own repository once it has a
backup, else pg_basebackup). Patroni stays the only thing that starts PostgreSQL, so Citus mode, the leader keys
and the replicas are exactly those of a freshly made cluster; stopping a cluster and restoring data directories
behind Patroni's back would race its own start-up and replica logic.

The restored cluster archives into its own repository (a rehearsal must never write into the repository of the
cluster it rehearses for); it reads the source repository only through --repo1-path in the bootstrap command.
Its nodes have new addresses, so pg_dist_node is brought to the new leaders and rows of old members go.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cluster.backup import BackupInfo, BackupScope, RestorePoint, list_backups, restore_points
from cluster.backup.runner import BackupError, LocalRunner
from cluster.local.harness import Harness
from cluster.provision import citus
from cluster.provision.health import check, wait_healthy
from cluster.provision.target import ClusterTarget
from cluster.render import pgbackrest

log = logging.getLogger("cluster.backup")


@dataclass
class RestoreReport:
    point: RestorePoint
    directory: str
    seconds: float
    nodes: list[dict[str, object]] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"point": self.point.summary(), "directory": self.directory, "seconds": round(self.seconds, 1),
                "pg_dist_node": self.nodes, "row_counts": self.row_counts,
                "problems": self.problems or "none: every group's leader is its pg_dist_node primary"}


def resolve_point(points: list[RestorePoint], name: str | None, at: datetime | None) -> RestorePoint:
    """The named point, or the latest point at or before `at`; refuses with the points that do exist."""
    known = ", ".join(f"{p.name} ({p.created_at.isoformat()})" for p in points[-5:]) or "none"
    if name is not None:
        for point in points:
            if point.name == name:
                return point
        raise BackupError(f"there is no restore point {name!r}; latest known: {known}. "
                          "List them with `python -m cluster backup list`.")
    if at is None or at.tzinfo is None:
        raise BackupError("--to-time needs a time with its zone, e.g. 2026-11-26T13:00:00+00:00")
    earlier = [p for p in points if p.created_at <= at]
    if not earlier:
        raise BackupError(f"no restore point at or before {at.isoformat()}; latest known: {known}")
    return earlier[-1]


def require_point_on_every_group(backups: dict[int, list[BackupInfo]], groups: list[int],
                                 point: RestorePoint) -> None:
    """A group can reach the point only from a backup that ended before it (WAL replay then runs up to the
    point); a group added later, or whose backups all expired, cannot, and restoring the others alone would
    give a cluster that is not consistent."""
    missing = [g for g in groups
               if not any(b.stopped.replace(microsecond=0) <= point.created_at for b in backups.get(g, []))]
    if missing:
        raise BackupError(f"restore point {point.name!r} ({point.created_at.isoformat()}) does not exist on every "
                          f"group: groups {missing} have no backup that ended before it. Nothing was restored; "
                          "choose a later point (`python -m cluster backup list`).")


def restore_into_harness(source_dir: Path, new_dir: Path, point: str | None = None,
                         at: datetime | None = None, timeout: float = 900.0) -> RestoreReport:
    """Restore the local cluster at `source_dir` to one point, as a new local cluster at `new_dir`."""
    source = Harness.load(source_dir)
    scope = BackupScope(source.plan, source.target, LocalRunner(str(source_dir)))
    chosen = resolve_point(restore_points(source.target), point, at)
    require_point_on_every_group(list_backups(scope), source.target.groups, chosen)
    if new_dir.exists() and any(new_dir.iterdir()):
        raise BackupError(f"--target-harness {new_dir} is not empty: give a new directory")
    started = time.monotonic()
    restored = Harness.create(source.config, new_dir, citus=source.citus)
    restored.passwords = source.passwords  # the restored catalogs hold the source's role passwords
    repo = pgbackrest.repo_path(source.plan)
    for group in restored.plan.groups:
        first = group[0]
        restored.patroni_overrides[first.name] = {
            "bootstrap": pgbackrest.bootstrap_from_backup(restored.plan, first, repo, chosen.name)}
    log.info("restoring %d groups to %s into %s", len(restored.plan.groups), chosen.name, new_dir)
    restored.up(timeout)
    restored.patroni_overrides.clear()  # a later bootstrap of this cluster must not restore again
    restored.write_files()
    restored.save()
    report = RestoreReport(chosen, str(new_dir), 0.0)
    report.nodes, report.problems = reregister(restored.target)
    report.seconds = time.monotonic() - started
    report.row_counts = row_counts(restored.target.rw_dsn)
    return report


def reregister(target: ClusterTarget, timeout: float = 120.0) -> tuple[list[dict[str, object]], list[str]]:
    """pg_dist_node of the restored coordinator still names the source's nodes: point each group at its new
    leader, drop rows of members that do not exist here, and report any group still pointing elsewhere."""
    report = wait_healthy(target, timeout=timeout)
    members = {(m.host, m.port) for m in target.members}
    with citus.connect(target.rw_dsn) as conn:
        citus.register(conn, target, report.leaders)
        for row in citus.nodes(conn):
            if (row.host, row.port) not in members and row.role != "primary":
                conn.execute("SELECT citus_remove_node(%s, %s)", (row.host, row.port))
        rows = citus.nodes(conn)
    leaders = check(target).leaders
    expected = {g: next((m.host, m.port) for m in target.members if m.name == name) for g, name in leaders.items()}
    primaries = {r.group: (r.host, r.port) for r in rows if r.role == "primary"}
    problems = [f"group {g}: pg_dist_node primary {primaries.get(g)} but the leader is at {where}"
                for g, where in sorted(expected.items()) if primaries.get(g) != where]
    return [r.summary() for r in rows], problems


def row_counts(dsn: str) -> dict[str, int]:
    """Rows of every table of the public schema (distributed, reference and local alike)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname").fetchall()]
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]  # type: ignore[index]
                for t in tables}
