"""Backups and restores rehearsed on real processes: pgBackRest, Patroni, Citus (issue 14)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from cluster.__main__ import main
from cluster.backup import (
    BackupScope,
    archive_health,
    base_backup,
    create_backup,
    create_restore_point,
    list_backups,
    read_repository,
    restore_points,
)
from cluster.backup.restore import harness_scope, restore_into_harness
from cluster.backup.runner import BackupError
from cluster.local.harness import Harness
from cluster.provision import provision, read_migrations
from cluster.provision.health import check as health_check
from cluster.render import pgbackrest
from tests.integration.conftest import SQL_DIR, start_harness

pytestmark = [pytest.mark.slow, pytest.mark.citus]

ACCOUNTS = 200
START_BALANCE = 1000
TABLES = ("rehearsal_accounts", "rehearsal_events")


def checksums(dsn: str) -> dict[str, dict[int, tuple[int, str]]]:
    """Per table, per shard: (rows, md5 of the rows in key order): a restore must give back exactly these."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {table: {shard: (rows, digest) for shard, rows, digest in conn.execute(
            f"SELECT get_shard_id_for_distribution_column('{table}', account), count(*), "
            f"md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t GROUP BY 1").fetchall()}
            for table in TABLES}


def load_rehearsal(dsn: str) -> None:
    """Accounts and events, distributed and colocated: ACCOUNTS accounts of START_BALANCE, 20000 events."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE rehearsal_accounts (account int PRIMARY KEY, balance bigint NOT NULL)")
        conn.execute("CREATE TABLE rehearsal_events (id bigserial, xfer bigint NOT NULL, account int NOT NULL, "
                     "amount int NOT NULL)")
        conn.execute("SELECT create_distributed_table('rehearsal_accounts', 'account')")
        conn.execute("SELECT create_distributed_table('rehearsal_events', 'account', "
                     "colocate_with => 'rehearsal_accounts')")
        conn.execute("INSERT INTO rehearsal_accounts SELECT g, %s FROM generate_series(1, %s) g",
                     (START_BALANCE, ACCOUNTS))
        conn.execute("INSERT INTO rehearsal_events (xfer, account, amount) "
                     "SELECT 0, 1 + g %% %s, 0 FROM generate_series(1, 20000) g", (ACCOUNTS,))


def transfer(conn: psycopg.Connection, rng: random.Random, xfer: int) -> None:
    """One multi-shard transaction: money moves between two accounts (usually in different groups) and an event
    row tagged `xfer` lands with each; the sum of balances never changes, so a torn transaction would show."""
    a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
    amount = rng.randint(1, 50)
    with conn.transaction():
        conn.execute("UPDATE rehearsal_accounts SET balance = balance - %s WHERE account = %s", (amount, a))
        conn.execute("UPDATE rehearsal_accounts SET balance = balance + %s WHERE account = %s", (amount, b))
        conn.execute("INSERT INTO rehearsal_events (xfer, account, amount) VALUES (%s, %s, %s), (%s, %s, %s)",
                     (xfer, a, -amount, xfer, b, amount))


class Writer(threading.Thread):
    """Transfers on their own connection until stopped, noting when each committed (monotonic clock)."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn, self.stop, self.committed = dsn, threading.Event(), {}

    def run(self) -> None:
        rng = random.Random(41)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            xfer = 100_000
            while not self.stop.is_set():
                xfer += 1
                started = time.monotonic()
                transfer(conn, rng, xfer)
                self.committed[xfer] = (started, time.monotonic())


def events_checksums(dsn: str, certain: set[int]) -> dict[int, tuple[int, str]]:
    """Per shard of rehearsal_events: rows and md5 of the rows whose transaction is known committed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT get_shard_id_for_distribution_column('rehearsal_events', account), count(*), "
            "md5(string_agg(concat_ws('/', id, xfer, account, amount), ',' ORDER BY id)) "
            "FROM rehearsal_events WHERE xfer = ANY(%s) GROUP BY 1", (sorted(certain),)).fetchall()
    return {shard: (count, digest) for shard, count, digest in rows}


@pytest.fixture
def restored_dir() -> Iterator[Path]:
    """A fresh directory for the restored cluster; whatever runs there is stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="citus-restored-"))
    shutil.rmtree(directory)
    yield directory
    if (directory / "state.json").exists():
        Harness.load(directory).down()
    shutil.rmtree(directory, ignore_errors=True)


def test_rehearsed_restore_gives_back_exactly_what_was_committed_before_the_point(
    harness: Harness, restored_dir: Path
) -> None:
    """Load, back up, write (multi-shard transactions, still running while the point is made), make the point,
    then DELETE / DROP / write more; restore: everything committed before the point, nothing after, every
    distributed transaction whole on every group."""
    scope = harness_scope(harness)
    rng = random.Random(14)
    load_rehearsal(harness.dsn())
    create_backup(scope, "full", point="rehearsal-base")
    with psycopg.connect(harness.dsn(), autocommit=True) as conn:
        for xfer in range(1, 41):
            transfer(conn, rng, xfer)

    writer = Writer(harness.dsn())
    writer.start()
    try:
        time.sleep(1)
        point_started = time.monotonic()
        point = create_restore_point(scope, "rehearsal-point")
        point_done = time.monotonic()
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    before = {0, *range(1, 41)} | {x for x, (_, done) in writer.committed.items() if done < point_started}
    after = {x for x, (started, _) in writer.committed.items() if started > point_done}
    assert after, "the writer made no transfer after the point: the test would not see one leak in"
    expected = events_checksums(harness.dsn(), before)

    # The mistakes after the point: a DELETE without WHERE, a DROP, and more writes.
    with psycopg.connect(harness.dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM rehearsal_events")
        conn.execute("DROP TABLE rehearsal_accounts CASCADE")
        conn.execute("CREATE TABLE rehearsal_after (id int)")
        conn.execute("INSERT INTO rehearsal_after SELECT generate_series(1, 100)")

    with pytest.raises(BackupError, match="no restore point 'no-such-point'"):
        restore_into_harness(harness.base_dir, restored_dir, point="no-such-point")

    report = restore_into_harness(harness.base_dir, restored_dir, point=point.name)
    restored = Harness.load(restored_dir)
    assert report.problems == [], report.problems
    assert "rehearsal_after" not in report.row_counts
    assert report.row_counts["rehearsal_accounts"] == ACCOUNTS
    dsn = restored.dsn()
    assert events_checksums(dsn, before) == expected  # all of it, row for row, shard by shard
    with psycopg.connect(dsn, autocommit=True) as conn:
        # 2PC left in flight at the point is resolved
        conn.execute("SELECT citus_cluster_recover_prepared_transactions()")
        present = {r[0] for r in conn.execute("SELECT DISTINCT xfer FROM rehearsal_events").fetchall()}
        assert not present & after, f"transfers made after the point leaked in: {sorted(present & after)[:5]}"
        assert before <= present
        (total,) = conn.execute("SELECT sum(balance) FROM rehearsal_accounts").fetchone()  # type: ignore[misc]
        assert total == ACCOUNTS * START_BALANCE  # every transfer whole across groups, or absent
        torn = conn.execute(
            "SELECT a.account FROM rehearsal_accounts a JOIN (SELECT account, sum(amount) AS moved "
            "FROM rehearsal_events GROUP BY account) e USING (account) WHERE a.balance <> %s + e.moved",
            (START_BALANCE,)).fetchall()
        assert torn == []
        assert conn.execute("SELECT count(*) FROM rehearsal_events GROUP BY xfer HAVING count(*) <> 2 "
                            "AND xfer <> 0").fetchall() == []
        nodes = conn.execute("SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' "
                             "ORDER BY groupid").fetchall()
        assert [(g, f"{h}:{p}") for g, h, p in nodes] == [
            (g, restored.member(restored.leader(g)).postgres.address) for g in range(len(restored.plan.groups))]
        conn.execute("INSERT INTO rehearsal_events (xfer, account, amount) VALUES (-1, 1, 0)")  # takes writes
    assert [p.name for p in restore_points(harness.target)][-2:] == ["rehearsal-base", point.name]
    assert all(infos for infos in list_backups(scope).values())


@pytest.fixture
def own_harness() -> Iterator[Harness]:
    """A cluster of its own, provisioned as `make up` leaves one (the schema, sql/0004's guarded 2PC recovery),
    stopped and removed afterwards whatever happened (an in-place restore rewinds everything a cluster holds, so
    it never runs on the shared one)."""
    cluster = start_harness()
    try:
        provision(cluster.target, read_migrations(SQL_DIR))
        yield cluster
    finally:
        cluster.down()


def assert_leaders_registered_and_money_kept(restored: Harness, conn: psycopg.Connection) -> None:
    """After a restore: pg_dist_node's primaries are Patroni's leaders, and once the prepared transactions are
    recovered every transfer is whole (the accounts' total is what they started with)."""
    nodes = conn.execute("SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' "
                         "ORDER BY groupid").fetchall()
    assert [(g, f"{host}:{port}") for g, host, port in nodes] == [
        (g, restored.member(restored.leader(g)).postgres.address) for g in range(len(restored.plan.groups))]
    conn.execute("SELECT citus_cluster_recover_prepared_transactions()")
    (total,) = conn.execute("SELECT sum(balance) FROM rehearsal_accounts").fetchone()  # type: ignore[misc]
    assert total == ACCOUNTS * START_BALANCE


def backed_up_then_transfers(h: Harness, scope: BackupScope, rng: random.Random, prefix: str) -> None:
    """The rehearsal's rows, a full backup (and its point `<prefix>-base`), then 40 multi-shard transfers."""
    load_rehearsal(h.dsn())
    create_backup(scope, "full", point=f"{prefix}-base")
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        for xfer in range(1, 41):
            transfer(conn, rng, xfer)


def test_in_place_restore_brings_the_cluster_itself_back_to_the_point(
    own_harness: Harness, capsys: pytest.CaptureFixture
) -> None:
    """Back up, write (transfers and a DELETE), make the point; then the mistakes: DELETE everything, more
    transfers, a backup past the point, a new table. `restore --in-place` gives back exactly what was committed
    before the point, from the backup before it; pg_dist_node right; the old data directories kept; the cluster
    takes writes and new restore points afterwards."""
    h = own_harness
    scope = harness_scope(h)
    rng = random.Random(15)
    backed_up_then_transfers(h, scope, rng, "inplace")
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM rehearsal_events WHERE xfer = 0 AND account <= 20")  # replayed too
    point = create_restore_point(scope, "inplace-point")
    expected = checksums(h.dsn())  # nothing writes between the point and here

    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM rehearsal_events")
        for xfer in range(41, 61):
            transfer(conn, rng, xfer)
    later = create_backup(scope, "full", point="inplace-later")  # the repository's latest backup: past the point
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE inplace_after (id int)")
        conn.execute("SELECT create_distributed_table('inplace_after', 'id')")
        conn.execute("INSERT INTO inplace_after SELECT generate_series(1, 1000)")
    members = {m.name: Path(m.data_dir) for m in h.plan.members}

    where = ["restore", "--harness", str(h.base_dir), "--in-place"]
    assert main([*where, "--to-point", "no-such-point", "--yes"]) == 1
    assert "no restore point 'no-such-point'" in capsys.readouterr().err
    assert not list(h.base_dir.glob("*/data.before-restore-*"))  # refused before anything was touched

    assert main([*where, "--to-point", point.name, "--yes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(f"\nin-place restore of {len(members)} members to {point.name}: {report['seconds']} s")
    assert report["point"]["name"] == point.name
    assert report["problems"].startswith("none"), report["problems"]
    assert not set(report["backup_sets"].values()) & {b.label for b in later.backups}
    assert "inplace_after" not in report["row_counts"]
    assert report["row_counts"]["rehearsal_accounts"] == ACCOUNTS
    # the point made after it lies on the timeline the restore left: no longer offered by the repository
    assert any("inplace-later" in n and "left-restore-point" in n for n in report["notes"]), report.get("notes")
    assert "inplace-later" not in {p.name for points in read_repository(scope)[1].values() for p in points}

    assert checksums(h.dsn()) == expected  # row for row, shard by shard
    assert sorted(report["moved_aside"]) == sorted(members)
    for name, data in members.items():  # kept, whole; the member runs on a new data directory
        aside = Path(report["moved_aside"][name])
        assert aside.parent == data.parent and (aside / "PG_VERSION").exists() and (data / "PG_VERSION").exists()
    restored = Harness.load(h.base_dir)
    assert health_check(restored.target).problems == []  # every group: a leader and a streaming replica
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        assert_leaders_registered_and_money_kept(restored, conn)
        transfer(conn, rng, 1_000_001)  # takes multi-shard writes
        assert conn.execute("SELECT count(*) FROM rehearsal_events WHERE xfer = 1000001").fetchone() == (2,)
    assert [p.name for p in restore_points(h.target)][-2:] == ["inplace-base", point.name]
    create_restore_point(harness_scope(restored), "inplace-after-restore")  # archiving carries on, new timeline


def test_in_place_restore_with_the_coordinator_group_lost_finds_the_point_in_the_repository(
    own_harness: Harness, restored_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """The coordinator group lost (both members stopped, their data directories deleted): its table of points
    is gone with it, and the repository alone names the points. A name recorded on some groups only is refused
    before anything is touched; a restore into a new directory, then `restore --in-place`, to a point every
    group records bring the cluster back: exactly the rows committed before the point, pg_dist_node right,
    both records agreeing again."""
    h = own_harness
    scope = harness_scope(h)
    rng = random.Random(16)
    backed_up_then_transfers(h, scope, rng, "lostcoord")
    made = time.monotonic()
    point = create_restore_point(scope, "lostcoord-point")
    with capsys.disabled():
        print(f"\nrestore point made, archived and recorded in 3 repositories: {time.monotonic() - made:.1f} s")
    expected = checksums(h.dsn())
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        for xfer in range(41, 61):
            transfer(conn, rng, xfer)
    # A point whose record a group's repository lacks (as if its annotation had failed): not restorable.
    partial = create_restore_point(scope, "lostcoord-partial")
    backups, recorded = read_repository(scope)
    assert all(partial in points and point in points for points in recorded.values())
    base = base_backup(backups[1], partial)
    assert base is not None
    scope.pgbackrest(h.member(h.leader(1)), f"--set={base.label}", "--annotation=restore-point:lostcoord-partial=",
                     "annotate")
    assert partial not in read_repository(scope)[1][1]
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM rehearsal_events")

    coordinators = sorted(h.plan.groups[0], key=lambda m: -m.index)
    for member in coordinators:  # the coordinator group and its volumes
        h.stop_member(member.name)
        shutil.rmtree(member.data_dir)

    where = ["--harness", str(h.base_dir)]
    assert main(["backup", "list", *where, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["restore_points"].startswith("not readable")
    assert [p["name"] for p in listed["repository_points"]] == ["lostcoord-base", point.name]
    assert any(d.startswith("lostcoord-partial: ") and "not on groups [1]" in d for d in listed["disagreements"])

    restore = ["restore", *where, "--in-place", "--yes"]
    assert main([*restore, "--to-point", "lostcoord-partial"]) == 1
    err = capsys.readouterr().err
    assert "'lostcoord-partial' is not recorded in every group's repository" in err
    assert "groups [0, 2] only, not on groups [1]" in err and "Nothing was restored" in err
    assert main([*restore, "--to-point", "no-such-point"]) == 1
    assert "no restore point 'no-such-point'" in capsys.readouterr().err
    assert not list(h.base_dir.glob("*/data.before-restore-*"))  # refused before anything was touched

    copy = restore_into_harness(h.base_dir, restored_dir, at=datetime.now(UTC))  # the latest complete point
    assert copy.point == point and copy.problems == [], copy.problems
    assert any("resolved from the repository alone" in n for n in copy.notes)
    assert checksums(Harness.load(restored_dir).dsn()) == expected
    Harness.load(restored_dir).down()  # two clusters on two cores: the in-place restore runs alone
    with capsys.disabled():
        print(f"\nrestore into a new directory with the coordinator group lost: {copy.seconds:.1f} s")

    started = time.monotonic()
    assert main([*restore, "--to-point", point.name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(f"\nin-place restore with the coordinator group lost, to {point.name}: {report['seconds']} s "
              f"({time.monotonic() - started:.1f} s with the resolution)")
    assert report["point"]["name"] == point.name
    assert any("resolved from the repository alone" in n for n in report["notes"])
    assert report["problems"].startswith("none"), report["problems"]
    assert report["row_counts"]["rehearsal_accounts"] == ACCOUNTS
    assert sorted(report["moved_aside"]) == sorted(m.name for m in h.plan.members if m.group != 0)

    restored = Harness.load(h.base_dir)
    assert health_check(restored.target).problems == []
    assert checksums(restored.dsn()) == expected  # row for row, shard by shard
    with psycopg.connect(restored.dsn(), autocommit=True) as conn:
        assert_leaders_registered_and_money_kept(restored, conn)
    assert [p.name for p in restore_points(restored.target)][-2:] == ["lostcoord-base", point.name]
    assert main(["backup", "list", *where, "--json"]) == 0  # the coordinator's table is back, and agrees
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed["restore_points"]][-2:] == ["lostcoord-base", point.name]
    assert listed["disagreements"] == "none"  # the partial point lies after it: marked left behind
    assert any("lostcoord-partial" in n for n in report["notes"])


def wait_archive(h: Harness, member: str, failing: bool, timeout: float = 90.0) -> None:
    """Write a little WAL on `member`, switch segments, and wait until its archiver is (not) failing."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(h.member_dsn(member), autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_logical_emit_message(false, 'citus-cluster-test', 'wal')")
            conn.execute("SELECT pg_switch_wal()")
            state = archive_health(h.target, {h.member(member).group: member})[0]
            if state.failing == failing and (failing or state.last_archived_wal):
                return
            time.sleep(2)
    raise AssertionError(f"{member}: archiver still {'not ' if failing else ''}failing after {timeout:.0f} s")


def test_archive_failure_is_reported_loudly_by_check_and_clears_once_fixed(
    harness: Harness, capsys: pytest.CaptureFixture
) -> None:
    leader = harness.leader(1)
    archive = Path(pgbackrest.repo_path(harness.plan)) / "archive" / pgbackrest.stanza(harness.plan, 1)
    mode = archive.stat().st_mode & 0o777
    check = ["provision", "--harness", str(harness.base_dir), "--check"]
    os.chmod(archive, 0)  # the repository refuses the postgres user: archive-push fails, as with a lost mount
    try:
        wait_archive(harness, leader, failing=True)
        assert main(check) == 1
        out = capsys.readouterr().out
        assert f"ARCHIVE FAILING on {leader} (group 1)" in out and "keeps serving" in out
        assert out.startswith("healthy")  # the cluster itself still serves ...
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:  # ... and takes writes
            conn.execute("CREATE TABLE archive_outage (id int)")
            conn.execute("SELECT create_distributed_table('archive_outage', 'id')")
            conn.execute("INSERT INTO archive_outage SELECT generate_series(1, 1000)")
    finally:
        os.chmod(archive, mode)
    wait_archive(harness, leader, failing=False)
    assert main(check) == 0
    out = capsys.readouterr().out
    assert "archive: ok" in out and "ARCHIVE FAILING" not in out


def test_new_standby_is_made_from_the_repository_catches_up_and_serves_reads(harness: Harness) -> None:
    scope = harness_scope(harness)
    create_backup(scope, "full", point=f"standby-{time.time_ns()}")
    replica = next(m.name for m in harness.plan.groups[2] if m.name != harness.leader(2))
    with psycopg.connect(harness.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE standby_rows (id int)")
        conn.execute("SELECT create_distributed_table('standby_rows', 'id')")
    harness.stop_member(replica)
    shutil.rmtree(harness.member(replica).data_dir)
    log = Path(harness.procs[replica].log)
    offset = log.stat().st_size
    harness.start_member(replica)
    harness.wait_member(replica, "replica")
    assert "replica has been created using pgbackrest" in log.read_text()[offset:]
    with psycopg.connect(harness.dsn(), autocommit=True) as conn:  # written after the backup: streamed
        conn.execute("INSERT INTO standby_rows SELECT generate_series(1, 5000)")
        shard = conn.execute("SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'standby_rows'::regclass "
                             "AND shardid IN (SELECT shardid FROM pg_dist_placement p JOIN pg_dist_node n "
                             "USING (groupid) WHERE n.groupid = 2) LIMIT 1").fetchone()
        assert shard is not None
        (expected,) = conn.execute(f"SELECT count(*) FROM standby_rows WHERE "
                                   f"get_shard_id_for_distribution_column('standby_rows', id) = {shard[0]}").fetchone()  # type: ignore[misc]
    deadline = time.monotonic() + 60
    with psycopg.connect(harness.member_dsn(replica), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        while True:
            try:
                (seen,) = conn.execute(f"SELECT count(*) FROM standby_rows_{shard[0]}").fetchone()  # type: ignore[misc]
            except psycopg.errors.UndefinedTable:
                seen = -1
            if seen == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert seen == expected


def test_lost_worker_group_is_restored_from_the_repository_to_the_latest_point(restored_dir: Path) -> None:
    """Both members of a worker group and their data directories gone: the cluster comes back from the
    repository at the latest restore point (every group there, so it is consistent), pg_dist_node right. A
    cluster of its own: the lost group cannot be handed back to the next test."""
    harness = start_harness()
    try:
        scope = harness_scope(harness)
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE lost_group_rows (id int, v text)")
            conn.execute("SELECT create_distributed_table('lost_group_rows', 'id')")
            conn.execute("INSERT INTO lost_group_rows SELECT g, md5(g::text) FROM generate_series(1, 30000) g")
        create_backup(scope, "full", point="lost-base")
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO lost_group_rows SELECT g, 'later' FROM generate_series(30001, 31000) g")
        latest = create_restore_point(scope)
        with psycopg.connect(harness.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO lost_group_rows SELECT g, 'after' FROM generate_series(31001, 32000) g")
        for member in sorted(harness.plan.groups[2], key=lambda m: -m.index):  # the group and its volumes
            harness.stop_member(member.name)
            shutil.rmtree(member.data_dir)
        report = restore_into_harness(harness.base_dir, restored_dir, at=datetime.now(UTC))
        assert report.point == latest
        assert report.problems == []
        assert report.row_counts["lost_group_rows"] == 31000
        assert {n["group"] for n in report.nodes if n["role"] == "primary"} == {0, 1, 2}
        with psycopg.connect(Harness.load(restored_dir).dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM lost_group_rows WHERE v = 'after'").fetchone() == (0,)
    finally:
        harness.down()


def test_cli_schedule_list_and_check_on_a_live_cluster(harness: Harness, capsys: pytest.CaptureFixture) -> None:
    """The schedule's first run makes a full backup where a group has none, the next a restore point (the
    defaults: full weekly, diff daily, a point every 15 minutes); list shows both; check passes."""
    where = ["--harness", str(harness.base_dir)]
    jobs = []
    for _ in range(2):
        assert main(["backup", "schedule", "--once", *where, "--json"]) == 0
        jobs.append(json.loads(capsys.readouterr().out)["ran"])
    assert jobs[1] in ("point", "nothing due") and jobs[0] in ("full", "point")
    assert main(["backup", "list", *where, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(listed["backups"]) == [str(g) for g in range(len(harness.plan.groups))]
    assert all(listed["backups"].values()) and listed["restore_points"]
    assert main(["backup", "check", *where]) == 0
    assert "ok: True" in capsys.readouterr().out
