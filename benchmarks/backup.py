"""`python -m benchmarks.backup --rows N --out DIR`: backup and restore numbers for issue 14 on a local cluster.

Starts its own local cluster (run it under `flock /tmp/citus-heavy.lock` on a shared machine), loads N seed rows
with the seed's own INSERT, then measures: a full backup of every group (time, database size, repository size),
10 % more rows and a differential backup, a restore of every group to the differential's point into a new local
cluster (until it serves with pg_dist_node right), and a new standby made from the repository against one made
with pg_basebackup from its primary (the repository made unreadable to pgBackRest for the second, so Patroni falls
back to its next method). Writes results.json and report.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.workload import SEED_INSERT, TABLE
from cluster.backup import BackupScope, create_backup
from cluster.backup.restore import harness_scope, restore_into_harness
from cluster.config.sources import project_root
from cluster.local.harness import Harness, harness_config
from cluster.provision import provision, read_migrations
from cluster.render import pgbackrest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backup", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results = run(args.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "report.md").write_text(report(results))
    print(report(results))
    return 0


def run(rows: int) -> dict[str, Any]:
    h = Harness.create(harness_config()).up()
    results: dict[str, Any] = {"rows": rows, "command": " ".join(["python -m benchmarks.backup", *sys.argv[1:]])}
    try:
        provision(h.target, read_migrations(project_root() / "sql"))
        started = time.monotonic()
        append_rows(h.dsn(), rows)
        results["load_s"] = round(time.monotonic() - started, 1)
        scope = harness_scope(h)
        results["full"] = _backup(scope, "full")
        append_rows(h.dsn(), rows // 10)
        results["diff"] = _backup(scope, "diff")
        results["repository_bytes"] = _du(pgbackrest.repo_path(h.plan))
        results["restore"] = _restore(h, results["diff"]["point"])
        results["standby_from_repository"] = _standby(h, group=1)
        backup_dir = Path(pgbackrest.repo_path(h.plan)) / "backup" / pgbackrest.stanza(h.plan, 1)
        mode = backup_dir.stat().st_mode & 0o777
        os.chmod(backup_dir, 0)  # pgBackRest's restore fails at once; Patroni falls back to pg_basebackup
        try:
            results["standby_from_primary"] = _standby(h, group=1)
        finally:
            os.chmod(backup_dir, mode)
    finally:
        h.down()
    return results


def append_rows(dsn: str, rows: int) -> None:
    """The seed's own INSERT ... SELECT, adding to what is there (the differential backs up the change)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(SEED_INSERT.format(table=TABLE), {"rows": rows})


def _backup(scope: BackupScope, kind: str) -> dict[str, Any]:
    started = time.monotonic()
    result = create_backup(scope, kind, point=f"bench-{kind}-{time.time_ns()}")  # type: ignore[arg-type]
    return {"seconds": round(time.monotonic() - started, 1), "per_group_s": result.seconds,
            "point": result.point.name, "database_bytes": sum(b.size for b in result.backups),
            "repository_bytes": sum(b.repo_size for b in result.backups)}


def _restore(h: Harness, point: str) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="citus-bench-restore-"))
    shutil.rmtree(directory)
    started = time.monotonic()
    try:
        report = restore_into_harness(h.base_dir, directory, point=point)
        return {"seconds": round(time.monotonic() - started, 1), "row_counts": report.row_counts,
                "problems": report.problems}
    finally:
        if (directory / "state.json").exists():
            Harness.load(directory).down()


def _standby(h: Harness, group: int) -> dict[str, Any]:
    """Rebuild a replica of `group` from nothing; seconds until Patroni reports it streaming."""
    replica = next(m.name for m in h.plan.groups[group] if m.name != h.leader(group))
    h.stop_member(replica)
    shutil.rmtree(h.member(replica).data_dir)
    log = Path(h.procs[replica].log)
    offset = log.stat().st_size
    started = time.monotonic()
    h.start_member(replica)
    h.wait_member(replica, "replica", timeout=1800)
    seconds = round(time.monotonic() - started, 1)
    text = log.read_text()[offset:]
    method = next((m for m in ("pgbackrest", "basebackup") if f"replica has been created using {m}" in text), "?")
    return {"member": replica, "seconds": seconds, "method": method}


def _du(path: str) -> int:
    done = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def report(r: dict[str, Any]) -> str:
    mib = 1024 * 1024
    lines = [f"# Backups and restore on {r['rows']:,} seed rows (local cluster: coordinator + 2 worker groups, "
             "2 members each, 2 cores)", "", f"Command: `{r['command']}`", "",
             "| what | time | size |", "|---|---|---|"]
    for kind in ("full", "diff"):
        b = r[kind]
        lines.append(f"| {kind} backup, all groups + restore point | {b['seconds']} s (per group {b['per_group_s']}) "
                     f"| database {b['database_bytes'] / mib:.0f} MiB, repository +{b['repository_bytes'] / mib:.1f} "
                     "MiB |")
    lines.append(f"| repository on disk (both backups + WAL) | | {r['repository_bytes'] / mib:.0f} MiB |")
    lines.append(f"| restore to the diff's point into a new cluster (serving, pg_dist_node right) | "
                 f"{r['restore']['seconds']} s | |")
    for key in ("standby_from_repository", "standby_from_primary"):
        s = r[key]
        lines.append(f"| new standby ({s['method']}) until streaming | {s['seconds']} s | |")
    lines += ["", f"Rows after restore: {r['restore']['row_counts']}", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
