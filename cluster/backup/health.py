"""Archive health for `provision --check`: is every primary's WAL reaching the repository?

A failing archive_command does not stop PostgreSQL: it keeps every WAL segment it could not archive in pg_wal
and retries, so the cluster serves on while its disk fills and its recovery point falls behind. That is why it is
reported loudly here (and turns --check's exit code to 1) while the health report still says the cluster serves.
"""

from __future__ import annotations

import json
from typing import Any

from cluster.backup import BackupScope, archive_health
from cluster.backup.runner import BackupError
from cluster.provision.target import ClusterTarget

# pgBackRest `info` status codes that mean the repository answered (2: no backup yet is not unreachable).
REPOSITORY_ANSWERED = {0, 2}


def archive_report(target: ClusterTarget, leaders: dict[int, str], scope: BackupScope | None) -> dict[str, Any]:
    """Per group primary: archived/failed counts, last archived WAL and its age, and whether the latest attempt
    failed; per stanza (when pgBackRest can be run here): whether the repository answers."""
    states = archive_health(target, leaders)
    problems = [f"ARCHIVE FAILING on {s.member} (group {s.group}): last failed WAL {s.last_failed_wal}, "
                f"{s.failed_count} failures; last success {_age(s.last_archived_age)}. The cluster keeps serving "
                "but keeps every unarchived WAL segment in pg_wal (disk grows) and no restore point after the last "
                "archived segment can be reached" for s in states if s.failing]
    repository: dict[int, str] = {}
    if scope is not None:
        for group, name in sorted(leaders.items()):
            repository[group] = _repository_status(scope, name)
            if repository[group] != "ok":
                problems.append(f"repository of group {group}: {repository[group]}")
    return {"ok": not problems, "problems": problems, "primaries": [s.summary() for s in states],
            "repository": repository or "not checked (name the cluster with --stack or --harness)"}


def _repository_status(scope: BackupScope, member_name: str) -> str:
    member = scope.member(member_name)
    try:
        info = json.loads(scope.pgbackrest(member, "--output=json", "info", timeout=60) or "[]")
    except (BackupError, ValueError) as exc:
        return f"unreachable: {exc}"
    codes = [(s.get("status") or {}).get("code", 99) for s in info]
    if codes and all(code in REPOSITORY_ANSWERED for code in codes):
        return "ok"
    messages = "; ".join((s.get("status") or {}).get("message", "?") for s in info)
    return f"not usable: {messages or 'no stanza'}"


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s ago"
