"""Restore every group of a cluster to the same restore point, under Patroni: as a new cluster, or in place.

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

In place, the same bootstrap runs on the cluster itself: every member stops, every data directory is moved aside
(kept, not deleted: whatever was written after the point is still there), each group's keys in etcd are deleted
(so Patroni bootstraps the group instead of waiting for a leader it knew), and the members start again. The
restored primaries promote onto a new timeline (PostgreSQL picks one the archive does not hold yet) and archive
into the same repository, next to the old timeline's WAL.

Both ways each group starts from the latest backup that ended before the point (pgBackRest would take the
latest one, which may lie past the point), and the other members clone the new leader with pg_basebackup (a
standby made from the repository's latest backup could hold writes of the timeline the restore leaves).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cluster.backup import (
    BackupInfo,
    BackupScope,
    RestorePoint,
    base_backup,
    mark_left_behind,
    point_records,
    read_repository,
)
from cluster.backup.points import settle_point
from cluster.backup.runner import BackupError, LocalRunner
from cluster.errors import ClusterError
from cluster.local.harness import Harness
from cluster.plan import Plan
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
    backup_sets: dict[int, str] = field(default_factory=dict)  # group -> the backup it was restored from
    moved_aside: dict[str, str] = field(default_factory=dict)  # in place: member -> its old data directory
    notes: list[str] = field(default_factory=list)  # e.g. the point was resolved from the repository alone

    def summary(self) -> dict[str, Any]:
        summary = {"point": self.point.summary(), "directory": self.directory, "seconds": round(self.seconds, 1),
                   "backup_sets": self.backup_sets}
        if self.moved_aside:
            summary["moved_aside"] = self.moved_aside
        if self.notes:
            summary["notes"] = self.notes
        return summary | {"pg_dist_node": self.nodes, "row_counts": self.row_counts,
                          "problems": self.problems or "none: every group's leader is its pg_dist_node primary"}


@dataclass(frozen=True)
class RestoreChoice:
    """What a restore starts from, settled before anything is touched: the point, and per group the backup."""

    point: RestorePoint
    backup_sets: dict[int, str]
    notes: list[str] = field(default_factory=list)  # how the point was found, when not the usual way


def require_point_on_every_group(backups: dict[int, list[BackupInfo]], groups: list[int],
                                 point: RestorePoint) -> dict[int, str]:
    """Per group, the backup to restore from (base_backup: the latest that ended before the point). A group
    added later, or whose backups all expired, has none, and restoring the others alone would give a cluster
    that is not consistent: refused."""
    chosen = {g: b.label for g in groups if (b := base_backup(backups.get(g, []), point)) is not None}
    missing = [g for g in groups if g not in chosen]
    if missing:
        raise BackupError(f"restore point {point.name!r} ({point.created_at.isoformat()}) does not exist on every "
                          f"group: groups {missing} have no backup that ended before it. Nothing was restored; "
                          "choose a later point (`python -m cluster backup list`).")
    return chosen


def harness_scope(harness: Harness) -> BackupScope:
    return BackupScope(harness.plan, harness.target, LocalRunner(str(harness.base_dir)))


def choose(scope: BackupScope, point: str | None, at: datetime | None) -> RestoreChoice:
    """The point (by name or time) and each group's backup, from the source's repository and, when its
    coordinator answers, its table of points too (settle_point: they must agree). Works with the source's
    coordinator group lost: the repository alone then decides."""
    backups, recorded = read_repository(scope)
    records = point_records(scope, recorded)
    chosen = settle_point(records, point, at)
    for note in records.notes:
        log.warning("%s", note)
    return RestoreChoice(chosen, require_point_on_every_group(backups, scope.target.groups, chosen), records.notes)


def bootstrap_overrides(plan: Plan, repo: str, choice: RestoreChoice) -> dict[str, dict[str, Any]]:
    """Per member, what its Patroni config gets for the restoring start: each group's first member bootstraps
    from its backup at the point, the other members clone it with pg_basebackup."""
    overrides: dict[str, dict[str, Any]] = {}
    for member in plan.members:
        if member.index == 0:
            overrides[member.name] = {"bootstrap": pgbackrest.bootstrap_from_backup(
                plan, member, repo, choice.point.name, choice.backup_sets[member.group])}
        else:
            overrides[member.name] = {"postgresql": {"create_replica_methods": ["basebackup"]}}
    return overrides


def bootstrap_at(harness: Harness, repo: str, choice: RestoreChoice) -> None:
    """bootstrap_overrides for the next start of `harness`."""
    harness.patroni_overrides.update(bootstrap_overrides(harness.plan, repo, choice))


def settle(harness: Harness, choice: RestoreChoice, started: float) -> RestoreReport:
    """After the restored cluster is up: its files as rendered again (a later bootstrap of it must not restore
    again), pg_dist_node brought to the leaders, and what it holds."""
    harness.patroni_overrides.clear()
    harness.write_files()
    harness.save()
    report = RestoreReport(choice.point, str(harness.base_dir), 0.0, backup_sets=choice.backup_sets,
                           notes=choice.notes)
    report.nodes, report.problems = reregister(harness.target)
    report.seconds = time.monotonic() - started
    report.row_counts = row_counts(harness.target.rw_dsn)
    return report


def restore_into_harness(source_dir: Path, new_dir: Path, point: str | None = None,
                         at: datetime | None = None, timeout: float = 900.0) -> RestoreReport:
    """Restore the local cluster at `source_dir` to one point, as a new local cluster at `new_dir`."""
    source = Harness.load(source_dir)
    choice = choose(harness_scope(source), point, at)
    if new_dir.exists() and any(new_dir.iterdir()):
        raise BackupError(f"--target-harness {new_dir} is not empty: give a new directory")
    started = time.monotonic()
    restored = Harness.create(source.config, new_dir, citus=source.citus)
    restored.passwords = source.passwords  # the restored catalogs hold the source's role passwords
    bootstrap_at(restored, pgbackrest.repo_path(source.plan), choice)
    log.info("restoring %d groups to %s into %s", len(restored.plan.groups), choice.point.name, new_dir)
    restored.up(timeout)
    return settle(restored, choice, started)


def restore_in_place(harness_dir: Path, point: str | None = None, at: datetime | None = None,
                     confirm: Callable[[str], None] | None = None, timeout: float = 900.0) -> RestoreReport:
    """Restore the local cluster at `harness_dir` itself to one point. `confirm` sees what will happen once
    the point and backups are settled, before anything changes, and raises to stop it."""
    harness = Harness.load(harness_dir)
    choice = choose(harness_scope(harness), point, at)
    stamp = aside_stamp()
    aside = {m.name: f"{m.data_dir}.before-restore-{stamp}" for m in harness.plan.members
             if Path(m.data_dir).exists()}
    if confirm is not None:
        confirm(in_place_plan(f"the cluster at {harness.base_dir}", harness.plan, choice,
                              {harness.member(n).data_dir: p for n, p in aside.items()}))
    started = time.monotonic()
    log.info("restoring %s in place to %s: stopping every member", harness_dir, choice.point.name)
    harness.stop_members([m.name for m in sorted(harness.plan.members, key=lambda m: -m.index)])
    try:
        for name, path in aside.items():
            os.rename(harness.member(name).data_dir, path)
        for group in range(len(harness.plan.groups)):
            harness.forget_group(group)
        bootstrap_at(harness, pgbackrest.repo_path(harness.plan), choice)
        harness.write_files()
        log.info("data directories moved aside (%s); every group bootstraps from the repository",
                 ", ".join(aside.values()))
        harness.start_members(timeout)
        report = settle(harness, choice, started)
        mark_left(harness_scope(harness), choice.point, report)
    except (ClusterError, OSError) as exc:
        kept = "; ".join(f"{n}: {p}" for n, p in aside.items())
        raise BackupError(f"in-place restore of {harness_dir} to {choice.point.name!r} failed: {exc}\nNothing "
                          f"was deleted: the data directories as they were before are kept ({kept}). To go back, "
                          f"stop the cluster with `python -m cluster local cleanup --dir {harness_dir}` (it keeps "
                          "the directory; `local down` would delete them) and move each one back to its member's "
                          "data directory.") from exc
    report.moved_aside = aside
    return report


def aside_stamp() -> str:
    """The suffix of the data directories an in-place restore moves aside (UTC, sortable)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def mark_left(scope: BackupScope, point: RestorePoint, report: RestoreReport) -> None:
    """The points after `point` are on the timeline the restore left: marked so in the repository (see
    mark_left_behind); a failure to mark them is reported, the restore itself stands."""
    try:
        left = mark_left_behind(scope, point)
    except BackupError as exc:
        report.problems.append(f"the restore points after {point.name!r} could not be marked as left behind in "
                               f"the repository ({exc}); a restore with the coordinator lost could pick one and "
                               "fail in recovery: restore to points at or before this one until it is fixed")
        return
    if left:
        report.notes.append(f"restore points after {point.name!r} are on the timeline this restore left and can "
                            f"no longer be reached; marked left-restore-point in the repository: {', '.join(left)}")


def in_place_plan(where: str, plan: Plan, choice: RestoreChoice, moves: dict[str, str]) -> str:
    """What an in-place restore of `where` will do, for the person confirming it; `moves`: each data directory
    and where it goes."""
    point = choice.point
    sets = ", ".join(f"group {g}: {label}" for g, label in sorted(choice.backup_sets.items()))
    lines = [f"restore IN PLACE: {where} goes back to restore point {point.name!r} "
             f"({point.created_at.isoformat()}); every write after it leaves the running cluster.",
             f"  every member stops ({len(plan.members)} in {len(plan.groups)} groups); "
             "clients get errors until the groups are back",
             "  data directories moved aside, not deleted:",
             *(f"    {source} -> {moved}" for source, moved in moves.items()),
             f"  each group's keys in etcd deleted; each group bootstraps from its backup ({sets}) and replays "
             "the archive up to the point; the other members clone the new leaders"]
    return "\n".join(lines)


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
