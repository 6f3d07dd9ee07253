"""Backups of a whole Citus cluster with pgBackRest, and restore points every group agrees on.

One stanza per Citus group; each group's current primary is backed up into its stanza, then the coordinator
runs `citus_create_restore_point(name)`, which writes the same named WAL record on every node while distributed
commits are blocked, so every group restored to that name holds the same set of distributed transactions. The
names (and when they were made) are kept twice: in a small coordinator table, written just before the point, so
a restored cluster still knows its own points and `backup list` shows them on a live cluster; and in every
group's repository, as an annotation of the backup a restore to the point starts from, so a restore can find
its point with the coordinator group lost (see cluster/backup/points.py for why annotations).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from cluster.backup.points import ANNOTATION_PREFIX, PointRecords, RestorePoint, annotation, points_of_backup
from cluster.backup.runner import BackupError, Runner
from cluster.plan import Member, Plan
from cluster.provision.health import check
from cluster.provision.target import ClusterTarget
from cluster.render import pgbackrest

__all__ = ["BackupError", "BackupScope", "PointRecords", "RestorePoint", "archive_health", "create_backup",
           "create_restore_point", "ensure_stanzas", "list_backups", "point_records", "read_repository",
           "restore_points"]
log = logging.getLogger("cluster.backup")

POINTS_TABLE = "citus_cluster_restore_points"
POINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
BackupKind = Literal["full", "diff", "incr"]
BACKUP_TIMEOUT = 3600.0
ARCHIVE_WAIT = 60.0


@dataclass(frozen=True)
class BackupScope:
    """A cluster as the backup commands see it: its plan (stanzas, config paths), how to reach it (DSNs, Patroni)
    and where pgBackRest runs (the runner)."""

    plan: Plan
    target: ClusterTarget
    runner: Runner

    def member(self, name: str) -> Member:
        return next(m for m in self.plan.members if m.name == name)

    def leaders(self) -> dict[int, Member]:
        """Each group's current primary; refuses while any group has none (nothing to back up from)."""
        report = check(self.target)
        missing = [g for g in self.target.groups if g not in report.leaders]
        if missing:
            raise BackupError(f"groups {missing} have no primary right now: " + "; ".join(report.problems)
                              + ". Check with `python -m cluster provision --check` and retry.")
        return {g: self.member(name) for g, name in sorted(report.leaders.items())}

    def pgbackrest(self, member: Member, *args: str, timeout: float = 300.0) -> str:
        return self.runner.run(member, pgbackrest.command(self.plan, member, *args), timeout)

    def member_dsn(self, member: Member) -> str:
        return next(t.dsn for t in self.target.members if t.name == member.name)


@dataclass(frozen=True)
class BackupInfo:
    group: int
    label: str
    kind: str
    started: datetime
    stopped: datetime
    size: int  # database size
    repo_size: int  # what the repository holds for it (compressed; a differential only its changes)
    points: tuple[RestorePoint, ...] = ()  # the restore points recorded on it (its annotations)

    def summary(self) -> dict[str, Any]:
        return {"group": self.group, "label": self.label, "type": self.kind, "started": self.started.isoformat(),
                "seconds": round((self.stopped - self.started).total_seconds(), 1), "size": self.size,
                "repo_size": self.repo_size}


@dataclass
class BackupResult:
    kind: str
    point: RestorePoint
    seconds: dict[int, float] = field(default_factory=dict)  # group -> backup wall time
    backups: list[BackupInfo] = field(default_factory=list)


def ensure_stanzas(scope: BackupScope) -> list[str]:
    """`stanza-create` for every group from its primary; pgBackRest makes it a no-op where the stanza exists."""
    created = []
    for group, leader in scope.leaders().items():
        scope.pgbackrest(leader, "stanza-create", timeout=120)
        created.append(pgbackrest.stanza(scope.plan, group))
    return created


def create_backup(scope: BackupScope, kind: BackupKind = "full", point: str | None = None) -> BackupResult:
    """Back up every group's primary (one group at a time: each saturates a core), then make a restore point."""
    name = point or default_point_name("backup")
    _check_point_name(scope, name)
    ensure_stanzas(scope)
    seconds = {}
    for group, leader in scope.leaders().items():
        started = time.monotonic()
        log.info("group %s: %s backup from %s", group, kind, leader.name)
        scope.pgbackrest(leader, f"--type={kind}", "backup", timeout=BACKUP_TIMEOUT)
        seconds[group] = round(time.monotonic() - started, 2)
    # pgBackRest records whole seconds: a point in the next second is unmistakably after every backup above
    # (a restore picks, per group, the latest backup that ended before its point).
    time.sleep(1 - time.time() % 1)
    made = create_restore_point(scope, name)
    latest = [max(infos, key=lambda b: b.stopped) for infos in list_backups(scope).values() if infos]
    return BackupResult(kind, made, seconds, latest)


def default_point_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"


def _check_point_name(scope: BackupScope, name: str) -> None:
    if not POINT_NAME.match(name):
        raise BackupError(f"restore point name {name!r}: use letters, digits and _ . : - (at most 63 characters), "
                          "starting with a letter or digit")
    records = point_records(scope)
    recorded = {p.name for p in records.coordinator or []} | {
        p.name for points in records.repository.values() for p in points}
    if name in recorded:
        raise BackupError(f"restore point {name!r} exists already (on the coordinator or in the repository): "
                          "recovery stops at the first record of a name, so a second one could never be reached. "
                          "Choose another name.")


def create_restore_point(scope: BackupScope, name: str | None = None) -> RestorePoint:
    """A cluster-wide consistent point: recorded, created on every node by Citus, and archived from every group
    before returning (a point still in an unarchived WAL segment could not be restored to)."""
    name = name or default_point_name("point")
    _check_point_name(scope, name)
    leaders = scope.leaders()
    with psycopg.connect(scope.target.rw_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {POINTS_TABLE} (name text PRIMARY KEY, "
                     "created_at timestamptz NOT NULL)")
        row = conn.execute(f"INSERT INTO {POINTS_TABLE} VALUES (%s, clock_timestamp()) RETURNING created_at",
                           (name,)).fetchone()
        try:
            conn.execute("SELECT citus_create_restore_point(%s)", (name,))
        except psycopg.Error:
            conn.execute(f"DELETE FROM {POINTS_TABLE} WHERE name = %s", (name,))  # no point: no record of one
            raise
    assert row is not None
    point = RestorePoint(name, row[0])
    for leader in leaders.values():
        _archive_current_segment(scope, leader)
    record_in_repository(scope, point, leaders)
    log.info("restore point %s created, archived and recorded in the repository of groups %s", name,
             sorted(leaders))
    return point


def base_backup(backups: list[BackupInfo], point: RestorePoint) -> BackupInfo | None:
    """The backup a restore to `point` starts from: the latest that ended before it (WAL replay then runs up
    to the point); None when the group has none.

    pgBackRest keeps whole seconds, so a backup that stopped in the point's own second may have ended just
    after it; one from an earlier second is preferred (create_backup makes its point in the next second)."""
    second = point.created_at.replace(microsecond=0)
    usable = [b for b in backups if b.stopped.replace(microsecond=0) <= second]
    earlier = [b for b in usable if b.stopped.replace(microsecond=0) < second]
    return max(earlier or usable, key=lambda b: (b.stopped, b.label)) if usable else None


def record_in_repository(scope: BackupScope, point: RestorePoint, leaders: dict[int, Member]) -> None:
    """Annotate each group's base backup for `point` with it (see cluster/backup/points.py). A group without a
    backup before the point cannot be restored to it anyway: nothing to record there, said in the log. A failed
    annotation is an error: the point exists, but could not be found with the coordinator lost."""
    backups, _ = read_repository(scope)
    unrecorded = []
    for group, leader in leaders.items():
        base = base_backup(backups.get(group, []), point)
        if base is None:
            unrecorded.append(group)
            continue
        scope.pgbackrest(leader, f"--set={base.label}", f"--annotation={annotation(point)}", "annotate",
                         timeout=60)
    if unrecorded:
        log.warning("restore point %s: groups %s have no backup that ended before it, so it is not recorded in "
                    "their repository and can never be restored; `backup create` makes a backup and a point "
                    "that can", point.name, unrecorded)


def _archive_current_segment(scope: BackupScope, member: Member, timeout: float = ARCHIVE_WAIT) -> None:
    """Close the WAL segment holding the point and wait until the archiver has shipped it."""
    with psycopg.connect(scope.member_dsn(member), autocommit=True, connect_timeout=5) as conn:
        (segment,) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()  # type: ignore[misc]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (archived,) = conn.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").fetchone()  # type: ignore[misc]
            if archived[:24] >= segment:
                return
            time.sleep(0.5)
    raise BackupError(f"{member.name}: WAL segment {segment} was not archived within {timeout:.0f} s, so the "
                      "restore point is not in the repository yet. See `python -m cluster provision --check` "
                      "(archive health) and the PostgreSQL log of that member.")


def restore_points(target: ClusterTarget) -> list[RestorePoint]:
    """The points recorded on the coordinator, oldest first (none before the first backup)."""
    with psycopg.connect(target.rw_dsn, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass(%s)", (POINTS_TABLE,)).fetchone() == (None,):
            return []
        rows = conn.execute(f"SELECT name, created_at FROM {POINTS_TABLE} ORDER BY created_at").fetchall()
    return [RestorePoint(name, created) for name, created in rows]


def list_backups(scope: BackupScope) -> dict[int, list[BackupInfo]]:
    """Every group's backups in the repository."""
    return read_repository(scope)[0]


def read_repository(scope: BackupScope) -> tuple[dict[int, list[BackupInfo]], dict[int, list[RestorePoint]]]:
    """Every group's backups and the restore points recorded on them, oldest first. `info` reads only the
    repository, so it runs with any member's config, even while the whole group is down (which is when a
    restore needs it); its JSON carries each backup's annotations."""
    backups: dict[int, list[BackupInfo]] = {}
    points: dict[int, list[RestorePoint]] = {}
    for group in range(len(scope.plan.groups)):
        info = json.loads(_repository_info(scope, group) or "[]")
        backups[group] = [_backup_info(group, b) for stanza in info for b in stanza.get("backup", [])]
        points[group] = sorted({p for b in backups[group] for p in b.points}, key=lambda p: (p.created_at, p.name))
    return backups, points


def mark_left_behind(scope: BackupScope, point: RestorePoint) -> list[str]:
    """After an in-place restore to `point`: every point the repository records after it lies on the timeline
    the restore left, and recovery (which follows the newest timeline) can never reach it again. Its record
    is renamed to left-restore-point:NAME (kept for a person, ignored by restores), so a later restore that
    has only the repository to go by (the coordinator lost) cannot pick it. Returns the names marked."""
    marked = set()
    for group, infos in list_backups(scope).items():
        member = scope.plan.groups[group][0]
        for info in infos:
            later = [p for p in info.points if p.created_at > point.created_at]
            if later:
                scope.pgbackrest(member, f"--set={info.label}",
                                 *(f"--annotation={ANNOTATION_PREFIX}{p.name}=" for p in later),
                                 *(f"--annotation=left-{annotation(p)}" for p in later), "annotate", timeout=60)
                marked |= {p.name for p in later}
    return sorted(marked)


def _repository_info(scope: BackupScope, group: int) -> str:
    """`info --output=json` of group `group`'s stanza, run where a member's config is: the group's own members
    first, then any other (the repository settings are global, so another group's config reads this stanza
    too): in a Docker stack a lost group's containers are gone with it."""
    own = scope.plan.groups[group]
    errors = []
    for member in [*own, *(m for m in scope.plan.members if m.group != group)]:
        argv = [pgbackrest.BINARY, f"--config={pgbackrest.config_path(member)}",
                f"--stanza={pgbackrest.stanza(scope.plan, group)}", "--output=json", "info"]
        try:
            return scope.runner.run(member, argv, 60)
        except BackupError as exc:
            errors.append(str(exc))
    raise BackupError(f"the repository of group {group} could not be read from any member:\n" + "\n".join(errors))


def point_records(scope: BackupScope, repository: dict[int, list[RestorePoint]] | None = None) -> PointRecords:
    """Both records of the restore points: the repository's (must be readable; read here unless given) and the
    coordinator's table (None with the reason when the coordinator cannot be reached, e.g. its group is lost)."""
    points = read_repository(scope)[1] if repository is None else repository
    groups = list(range(len(scope.plan.groups)))
    try:
        return PointRecords(groups, points, restore_points(scope.target))
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return PointRecords(groups, points, None, reason)


def _backup_info(group: int, raw: dict[str, Any]) -> BackupInfo:
    stamp = raw["timestamp"]
    return BackupInfo(
        group=group,
        label=raw["label"],
        kind=raw["type"],
        started=datetime.fromtimestamp(stamp["start"], UTC),
        stopped=datetime.fromtimestamp(stamp["stop"], UTC),
        size=int(raw["info"]["size"]),
        repo_size=int(raw["info"]["repository"]["delta"]),
        points=tuple(points_of_backup(raw.get("annotation"))),
    )


@dataclass(frozen=True)
class ArchiveState:
    member: str
    group: int
    archived_count: int
    failed_count: int
    last_archived_wal: str | None
    last_archived_age: float | None  # seconds since the last successful archive
    last_failed_wal: str | None
    failing: bool  # the latest attempt failed (a failure newer than the last success)

    def summary(self) -> dict[str, Any]:
        return {"member": self.member, "group": self.group, "archived": self.archived_count,
                "failed": self.failed_count, "last_archived_wal": self.last_archived_wal,
                "last_archived_age_s": None if self.last_archived_age is None else round(self.last_archived_age, 1),
                "last_failed_wal": self.last_failed_wal, "failing": self.failing}


def archive_health(target: ClusterTarget, leaders: dict[int, str]) -> list[ArchiveState]:
    """pg_stat_archiver of every group's primary (standbys do not archive)."""
    states = []
    for group, name in sorted(leaders.items()):
        dsn = next(m.dsn for m in target.members if m.name == name)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT archived_count, failed_count, last_archived_wal, "
                "extract(epoch FROM now() - last_archived_time)::float8, last_failed_wal, "
                "coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) "
                "FROM pg_stat_archiver").fetchone()
        assert row is not None
        states.append(ArchiveState(name, group, *row))
    return states
