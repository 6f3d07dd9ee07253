"""Where restore points are recorded, and how a restore settles on one when the records disagree (pure).

Every point is recorded twice when it is made:
- in `citus_cluster_restore_points` on the coordinator (what `backup list` shows on a live cluster, and what a
  restored cluster knows of its own past), and
- in the pgBackRest repository of every group, as an annotation of that group's latest backup (pgBackRest 2.41+:
  `annotate --set=LABEL --annotation=restore-point:NAME=TIME`; `info --output=json` returns it with the backup).

Why annotations and not a file or a table elsewhere: they live in the repository itself (backup.info and the
backup's manifest), so they survive whatever the repository survives, on the volume and on S3 alike, through the
same pgBackRest configuration and credentials the backups use (pgBackRest has no command to put an arbitrary
file into a repository, and writing next to it by hand would work for the volume only). They are per group, so
losing any group (the coordinator's included) loses none of the others' records. And a point is attached to the
backup a restore to it starts from (the latest that ended before it): when retention expires that backup, the
point could not be restored any more (its base backup and WAL are gone), and its record goes with it.

A restore reads both. The coordinator unreachable (its group lost): the repository decides, and a point counts
only when every group records it (a group without it cannot be brought to it). Both readable but saying
different things about the point asked for: refused, naming both, never resolved silently in favour of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cluster.backup.runner import BackupError

ANNOTATION_PREFIX = "restore-point:"


@dataclass(frozen=True)
class RestorePoint:
    name: str
    created_at: datetime

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "created_at": self.created_at.isoformat()}


def annotation(point: RestorePoint) -> str:
    """The `--annotation` value recording `point` on a backup."""
    return f"{ANNOTATION_PREFIX}{point.name}={point.created_at.isoformat()}"


def points_of_backup(annotations: dict[str, Any] | None) -> list[RestorePoint]:
    """The restore points recorded in one backup's annotations (other annotations are left alone)."""
    found = []
    for key, value in (annotations or {}).items():
        if key.startswith(ANNOTATION_PREFIX) and value:
            try:
                found.append(RestorePoint(key[len(ANNOTATION_PREFIX):], datetime.fromisoformat(str(value))))
            except ValueError:
                continue  # not one of ours
    return found


@dataclass(frozen=True)
class PointRecords:
    """What each record says: the repository per group, and the coordinator's table (None: not readable)."""

    groups: list[int]
    repository: dict[int, list[RestorePoint]]
    coordinator: list[RestorePoint] | None
    coordinator_error: str = ""
    notes: list[str] = field(default_factory=list)

    def holders(self, name: str) -> dict[int, RestorePoint]:
        """The groups whose repository records `name`, with what each recorded."""
        return {g: p for g in self.groups for p in self.repository.get(g, []) if p.name == name}

    def complete(self) -> list[RestorePoint]:
        """Points every group records, the same on each, oldest first: the ones the repository can restore."""
        names = {p.name for g in self.groups for p in self.repository.get(g, [])}
        found = []
        for name in names:
            held = self.holders(name)
            if set(held) == set(self.groups) and len(set(held.values())) == 1:
                found.append(next(iter(held.values())))
        return sorted(found, key=lambda p: (p.created_at, p.name))

    def differences(self) -> list[str]:
        """Every point the records do not agree on, one line each: a point some groups' repository lacks, and
        with the coordinator readable, a point its table and the repository do not hold alike."""
        complete = {p.name: p for p in self.complete()}
        names = {p.name for g in self.groups for p in self.repository.get(g, [])}
        if self.coordinator is None:
            return [f"{name}: repository {self._repository_view(name)}" for name in sorted(names - set(complete))]
        table = {p.name: p for p in self.coordinator}
        return [f"{name}: coordinator {self._coordinator_view(name)}, repository {self._repository_view(name)}"
                for name in sorted(names | set(table))
                if not (name in complete and table.get(name) == complete[name])]

    def _coordinator_view(self, name: str) -> str:
        if self.coordinator is None:
            return f"not readable ({self.coordinator_error})"
        point = next((p for p in self.coordinator if p.name == name), None)
        return "has no such point" if point is None else f"has it ({point.created_at.isoformat()})"

    def _repository_view(self, name: str) -> str:
        held = self.holders(name)
        missing = [g for g in self.groups if g not in held]
        if not held:
            return "has it on no group"
        times = sorted({p.created_at.isoformat() for p in held.values()})
        if not missing:
            if len(times) == 1:
                return f"has it on every group ({times[0]})"
            return f"has it on every group but with different times ({', '.join(times)})"
        return f"has it on groups {sorted(held)} only, not on groups {missing}"


def resolve_point(points: list[RestorePoint], name: str | None, at: datetime | None,
                  where: str = "") -> RestorePoint:
    """The named point, or the latest point at or before `at`; refuses with the points that do exist."""
    known = ", ".join(f"{p.name} ({p.created_at.isoformat()})" for p in points[-5:]) or "none"
    if name is not None:
        for point in points:
            if point.name == name:
                return point
        raise BackupError(f"there is no restore point {name!r}{where}; latest known: {known}. "
                          "List them with `python -m cluster backup list`.")
    if at is None or at.tzinfo is None:
        raise BackupError("--to-time needs a time with its zone, e.g. 2026-11-26T13:00:00+00:00")
    earlier = [p for p in points if p.created_at <= at]
    if not earlier:
        raise BackupError(f"no restore point at or before {at.isoformat()}{where}; latest known: {known}")
    return earlier[-1]


def settle_point(records: PointRecords, name: str | None, at: datetime | None) -> RestorePoint:
    """The point a restore goes to, from both records; a refusal says what each record holds and what to do.

    Coordinator unreachable: the repository alone, a point only when every group records it. Both readable:
    they must agree on the point asked for (by name: both hold it, with the same time; by time: both resolve
    it to the same point)."""
    complete = records.complete()
    if name is not None and name not in {p.name for p in complete} and records.holders(name):
        seen = "" if records.coordinator is None else f"; the coordinator {records._coordinator_view(name)}"
        raise BackupError(
            f"restore point {name!r} is not recorded in every group's repository: the repository "
            f"{records._repository_view(name)}{seen}. A restore brings every group to the same point, so it "
            "needs the point on every group. Nothing was restored. Choose a point every group records "
            f"(latest: {_latest(complete)}; `python -m cluster backup list`).")
    if records.coordinator is None:
        records.notes.append(f"the coordinator could not be read ({records.coordinator_error}): the restore "
                             "point was resolved from the repository alone (recorded on every group)")
        return resolve_point(complete, name, at, " in every group's repository")
    try:
        from_table = resolve_point(records.coordinator, name, at)
    except BackupError:
        if name is not None and not records.holders(name):
            raise  # neither record knows it: the plain "no such point"
        from_table = None
    try:
        from_repository: RestorePoint | None = resolve_point(complete, name, at)
    except BackupError:
        if from_table is None:
            raise
        from_repository = None
    if from_table == from_repository and from_table is not None:
        return from_table
    asked = f"restore point {name!r}" if name is not None else f"--to-time {at.isoformat() if at else at}"
    table_says = "nothing" if from_table is None else f"{from_table.name} ({from_table.created_at.isoformat()})"
    repo_says = ("nothing" if from_repository is None
                 else f"{from_repository.name} ({from_repository.created_at.isoformat()})")
    raise BackupError(
        f"the two records of restore points disagree on {asked}: the coordinator's table gives {table_says}, the "
        f"repository (every group) gives {repo_says}. Every point is written to both when it is made, so they "
        "should agree. A point only on the coordinator was made before points were recorded in the repository, "
        "or its recording there failed; a point only in the repository was typically left on the old timeline "
        "by an earlier in-place restore to an earlier point (it cannot be reached any more). Nothing was "
        f"restored. Restore a point both hold (latest: {_latest(_agreed(records))}); `python -m cluster backup "
        "list` shows both records and where they differ.")


def _agreed(records: PointRecords) -> list[RestorePoint]:
    table = set(records.coordinator or [])
    return [p for p in records.complete() if p in table]


def _latest(points: list[RestorePoint]) -> str:
    return ", ".join(f"{p.name} ({p.created_at.isoformat()})" for p in points[-3:]) or "none"
