"""The backup schedule: which job is due now, decided from what the repository and the coordinator hold.

Stateless on purpose: `python -m cluster backup schedule` can be run once a minute from cron or a systemd timer
(`--once`), or left looping, restarted, or run from another machine, and it never doubles a backup or skips
one, because every decision comes from the last full backup, the last backup of any kind and the last restore
point, not from memory of its own.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from cluster.backup import BackupScope, create_backup, create_restore_point, list_backups, restore_points
from cluster.config.models import BackupSchedule

log = logging.getLogger("cluster.backup")
Job = Literal["full", "diff", "point"]


def due(now: datetime, schedule: BackupSchedule, last_full: datetime | None, last_backup: datetime | None,
        last_point: datetime | None) -> Job | None:
    """The job due at `now`: a full backup when the last full is fullEveryHours old (or there is none), else a
    differential when the last backup is differentialEveryHours old, else a restore point when the last one is
    restorePointEveryMinutes old; None when nothing is due."""
    if last_full is None or now - last_full >= timedelta(hours=schedule.full_every_hours):
        return "full"
    if last_backup is None or now - last_backup >= timedelta(hours=schedule.differential_every_hours):
        return "diff"
    if last_point is None or now - last_point >= timedelta(minutes=schedule.restore_point_every_minutes):
        return "point"
    return None


def run_due(scope: BackupScope, now: datetime) -> Job | None:
    """Do whatever is due for the whole cluster (a group with no full backup makes a full one due)."""
    backups = list_backups(scope)
    fulls = [max((b.started for b in infos if b.kind == "full"), default=None) for infos in backups.values()]
    anys = [max((b.started for b in infos), default=None) for infos in backups.values()]
    points = restore_points(scope.target)
    job = due(now, scope.plan.config.backups.schedule,
              None if None in fulls else min(f for f in fulls if f is not None),
              None if None in anys else min(a for a in anys if a is not None),
              points[-1].created_at if points else None)
    if job == "point":
        create_restore_point(scope)
    elif job is not None:
        create_backup(scope, job)
    log.info("schedule: %s", job or "nothing due")
    return job


def loop(scope: BackupScope, interval: float) -> None:
    """Check every `interval` seconds until interrupted."""
    while True:
        run_due(scope, datetime.now(UTC))
        time.sleep(interval)
