"""A local cluster by hand: `python -m cluster local up` prints what to connect to and stays up; `down` stops it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from cluster.local.processes import pid_alive
from tests.integration.conftest import harness_missing

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cluster", "local", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_up_prints_json_and_down_stops_everything(tmp_path: Path) -> None:
    if reason := harness_missing():
        pytest.skip(reason)
    config = tmp_path / "small.yaml"
    config.write_text("coordinator: {members: 1}\nworkers: {groups: 1, members: 1}\n")
    where = Path(tempfile.mkdtemp(prefix="citus-harness-cli-")) / "cluster"  # pytest's tmp_path is root-only
    where.parent.chmod(0o755)
    up = run("up", "--config", str(config), "--dir", str(where), "--no-citus")
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert set(info["patroni"]) == {"h-coordinator-0", "h-worker1-0"}
        assert info["citus"] is False and "turned off" in info["citus_missing"]
        with psycopg.connect(info["rw_dsn"]) as conn:  # plain Patroni: the harness created the database
            assert conn.execute("SELECT current_database()").fetchone() == ("citus",)
        members = ("h-coordinator-0", "h-worker1-0")
        assert set(info["pids"]) == {  # etcd, HAProxy, and per member Patroni and its exporter; one PgBouncer
            "h-etcd-0", "h-haproxy", *members, *(f"{m}-exporter" for m in members), "h-coordinator-0-pgbouncer",
            "h-coordinator-0-pgbouncer-exporter"}  # and its exporter
        pids = list(info["pids"].values())
        assert all(pid_alive(pid) for pid in pids)
    finally:
        down = run("down", "--dir", str(where))
    assert down.returncode == 0, down.stderr
    assert not where.exists()
    shutil.rmtree(where.parent)
    assert not any(pid_alive(pid) for pid in pids)


def test_cli_reports_bad_config_and_missing_state(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: {groups: 0}\n")
    result = run("up", "--config", str(bad), "--dir", str(tmp_path / "never"))
    assert result.returncode == 2 and "workers.groups" in result.stderr
    assert not (tmp_path / "never").exists()
    missing = run("down", "--dir", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "state.json not found" in missing.stderr


def standby(harness, group: int) -> str:  # type: ignore[no-untyped-def]
    return next(m.name for m in harness.plan.groups[group] if m.name != harness.leader(group))


class TestEachTestGetsACleanCluster:
    """The `harness` fixture puts back what a test changed; the second test sees the first one's mess gone.
    (pytest runs a class's tests in order.)"""

    def test_a_test_leaves_a_mess(self, harness) -> None:  # type: ignore[no-untyped-def]
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE left_behind (n int)")
            conn.execute("CREATE VIEW left_view AS SELECT * FROM left_behind")
        with psycopg.connect(harness.dsn(database="postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE left_database")
        harness.stop_member(standby(harness, 0))  # standbys: a test before may have moved the leaders
        harness.freeze_member(standby(harness, 1))

    def test_the_next_test_finds_it_cleaned_up(self, harness) -> None:  # type: ignore[no-untyped-def]
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('left_behind'), to_regclass('left_view')").fetchone() == (
                None, None)
        with psycopg.connect(harness.dsn(database="postgres"), autocommit=True) as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = 'left_database'").fetchone() is None
        for group in (0, 1):  # every member back: one leader, the others replicas again
            assert [harness.role_of(m.name) for m in harness.plan.groups[group]].count("replica") == \
                len(harness.plan.groups[group]) - 1, group
