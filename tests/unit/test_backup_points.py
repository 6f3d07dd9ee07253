"""Choosing the restore point from its two records (coordinator table, every group's repository), and refusing one
that not every group can reach (pure; no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cluster.backup import BackupInfo, RestorePoint, base_backup
from cluster.backup.points import PointRecords, annotation, points_of_backup, resolve_point, settle_point
from cluster.backup.restore import require_point_on_every_group
from cluster.backup.runner import BackupError

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POINTS = [RestorePoint(n, T0 + timedelta(minutes=m)) for n, m in (("a", 0), ("b", 15), ("c", 60))]


def backup(group: int, stopped: datetime) -> BackupInfo:
    return BackupInfo(group, f"g{group}", "full", stopped - timedelta(seconds=5), stopped, 1, 1)


def test_a_name_resolves_to_that_point() -> None:
    assert resolve_point(POINTS, "b", None) == POINTS[1]


def test_a_time_resolves_to_the_latest_point_at_or_before_it() -> None:
    assert resolve_point(POINTS, None, T0 + timedelta(minutes=59)).name == "b"
    assert resolve_point(POINTS, None, T0 + timedelta(minutes=15)).name == "b"
    assert resolve_point(POINTS, None, T0 + timedelta(days=1)).name == "c"


def test_unknown_name_and_too_early_time_are_refused_naming_the_known_points() -> None:
    with pytest.raises(BackupError, match="no restore point 'x'.*c \\("):
        resolve_point(POINTS, "x", None)
    with pytest.raises(BackupError, match="no restore point at or before"):
        resolve_point(POINTS, None, T0 - timedelta(seconds=1))
    with pytest.raises(BackupError, match="with its zone"):
        resolve_point(POINTS, None, datetime(2026, 11, 26, 13))


def test_a_point_is_refused_when_a_group_has_no_backup_before_it() -> None:
    point = POINTS[1]
    ok = {0: [backup(0, T0)], 1: [backup(1, T0)], 2: [backup(2, T0)]}
    require_point_on_every_group(ok, [0, 1, 2], point)
    late = {**ok, 2: [backup(2, point.created_at + timedelta(minutes=1))]}  # a group added after the point
    with pytest.raises(BackupError, match=r"does not exist on every group: groups \[2, 3\]"):
        require_point_on_every_group(late, [0, 1, 2, 3], point)


def test_schedule_runs_full_then_differentials_then_restore_points() -> None:
    from cluster.backup.schedule import due
    from cluster.config.models import BackupSchedule

    s = BackupSchedule(full_every_hours=168, differential_every_hours=24, restore_point_every_minutes=15)
    hour = timedelta(hours=1)
    assert due(T0, s, None, None, None) == "full"  # nothing yet
    assert due(T0, s, T0 - 168 * hour, T0 - hour, T0) == "full"
    assert due(T0, s, T0 - 100 * hour, T0 - 24 * hour, T0) == "diff"
    assert due(T0, s, T0 - 100 * hour, T0 - hour, T0 - timedelta(minutes=15)) == "point"
    assert due(T0, s, T0 - 100 * hour, T0 - hour, T0 - timedelta(minutes=14)) is None


# Two records of the points: every group's repository (annotations) and the coordinator's table.

GROUPS = [0, 1, 2]


def records(repository: dict[int, list[RestorePoint]] | None = None, coordinator: list[RestorePoint] | None = POINTS,
            error: str = "") -> PointRecords:
    repo = {g: list(POINTS) for g in GROUPS} if repository is None else repository
    return PointRecords(GROUPS, repo, coordinator, error)


def test_annotations_round_trip_and_foreign_ones_are_ignored() -> None:
    point = RestorePoint("p:1.x-y", T0 + timedelta(microseconds=250))
    key, value = annotation(point).split("=", 1)
    assert key == "restore-point:p:1.x-y"
    assert points_of_backup({key: value, "source": "Sunday backup", "restore-point:bad": "not a time",
                             "restore-point:gone": ""}) == [point]
    assert points_of_backup(None) == []


def test_both_records_agreeing_resolve_as_before() -> None:
    both = records()
    assert settle_point(both, "b", None) == POINTS[1]
    assert settle_point(both, None, T0 + timedelta(minutes=59)) == POINTS[1]
    assert both.differences() == [] and both.notes == []


def test_coordinator_lost_the_repository_decides_and_says_so() -> None:
    lost = records(coordinator=None, error="connection refused")
    assert settle_point(lost, "c", None) == POINTS[2]
    assert settle_point(lost, None, T0 + timedelta(days=1)) == POINTS[2]
    assert "could not be read (connection refused)" in lost.notes[0] and "repository alone" in lost.notes[0]
    with pytest.raises(BackupError, match="no restore point 'x' in every group's repository.*c \\("):
        settle_point(lost, "x", None)


def test_a_point_missing_on_some_group_is_refused_whatever_the_coordinator_says() -> None:
    repo = {0: list(POINTS), 1: POINTS[:2], 2: POINTS[:2]}  # c recorded on group 0 only
    for coordinator in (None, POINTS):
        with pytest.raises(BackupError, match=r"'c' is not recorded in every group's repository: the repository "
                                              r"has it on groups \[0\] only, not on groups \[1, 2\].*Nothing was "
                                              r"restored.*latest: a .*b \("):
            settle_point(records(repo, coordinator), "c", None)
    # by time the repository alone skips it: the latest point every group records
    assert settle_point(records(repo, None), None, T0 + timedelta(days=1)) == POINTS[1]
    assert records(repo, None).differences() == ["c: repository has it on groups [0] only, not on groups [1, 2]"]
    assert records(repo).differences() == [f"c: coordinator has it ({POINTS[2].created_at.isoformat()}), "
                                           "repository has it on groups [0] only, not on groups [1, 2]"]


def test_records_that_disagree_are_refused_naming_both() -> None:
    only_table = records({g: POINTS[:2] for g in GROUPS})  # c: on the coordinator only
    with pytest.raises(BackupError, match=r"disagree on restore point 'c': the coordinator's table gives c "
                                          r"\(.*\), the repository \(every group\) gives nothing.*Nothing was "
                                          r"restored.*latest: a .*b \("):
        settle_point(only_table, "c", None)
    with pytest.raises(BackupError, match=r"disagree on --to-time .*gives c .*gives b "):
        settle_point(only_table, None, T0 + timedelta(days=1))
    assert settle_point(only_table, None, T0 + timedelta(minutes=20)) == POINTS[1]  # both say b
    assert only_table.differences() == [f"c: coordinator has it ({POINTS[2].created_at.isoformat()}), "
                                        "repository has it on no group"]

    only_repository = records(coordinator=POINTS[:2])  # c: e.g. on a timeline an in-place restore left
    with pytest.raises(BackupError, match="coordinator's table gives nothing, the repository .* gives c.*old "
                                          "timeline"):
        settle_point(only_repository, "c", None)

    moved = records(coordinator=[*POINTS[:2], RestorePoint("c", POINTS[2].created_at + timedelta(seconds=1))])
    with pytest.raises(BackupError, match="disagree on restore point 'c'"):
        settle_point(moved, "c", None)


def test_a_name_neither_record_knows_is_the_plain_refusal() -> None:
    with pytest.raises(BackupError, match="there is no restore point 'x'; latest known"):
        settle_point(records(), "x", None)


def test_base_backup_is_the_latest_that_ended_before_the_point() -> None:
    point = POINTS[1]
    before, same_second, after = (backup(0, point.created_at - timedelta(minutes=1)),
                                  backup(0, point.created_at), backup(0, point.created_at + timedelta(seconds=2)))
    assert base_backup([before, after], point) == before
    assert base_backup([before, same_second], point) == before  # an earlier second wins
    assert base_backup([same_second], point) == same_second
    assert base_backup([after], point) is None
