"""Choosing the restore point, and refusing one that not every group can reach (pure; no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cluster.backup import BackupInfo, RestorePoint
from cluster.backup.points import resolve_point
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
