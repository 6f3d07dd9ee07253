"""Issue 12 without TLS, on real processes: DCS-only settings really apply, the application role has least
privilege and can run the seed's workload, and every database password rotates on a running cluster.

One harness for the module (it is changed by the tests in order: provisioned, then rotated, then failed over).
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from benchmarks import workload
from cluster.local import processes
from cluster.local.harness import Harness
from cluster.plan import REPLICATION_USER, RESTAPI_USER, STATS_USER, SUPERUSER
from cluster.provision import citus as citus_sql
from cluster.provision import provision, read_migrations
from cluster.provision.dcs import config_patch
from cluster.provision.migrations import Migration
from cluster.provision.rest import basic_status, rest_send
from cluster.provision.roles import with_password
from cluster.provision.scram import scram_verifier
from cluster.render.haproxy import METRICS_PATH
from cluster.render.secret_files import all_member_secrets
from cluster.secrets import Passwords
from tests.integration.conftest import SQL_DIR, start_harness

pytestmark = [pytest.mark.slow, pytest.mark.citus]

# Settings Patroni takes from its DCS only; before issue 12 they were silently dropped (Patroni's defaults are
# 100 and 64).
DCS_SETTINGS = {"max_connections": 120, "max_locks_per_transaction": 128}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Harness]:
    harness = start_harness({"postgresql": {"parameters": {"max_connections": 120,
                                                           "max_locks_per_transaction": 128}}})
    try:
        provision(harness.target, read_migrations(SQL_DIR))
        yield harness
    finally:
        harness.down()


def _show(dsn: str, setting: str) -> str:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return str(conn.execute(f"SHOW {setting}").fetchone()[0])


# A refused login: PostgreSQL's words, or PgBouncer's (the read-write port) for a SCRAM exchange that failed.
REFUSED = "password authentication failed|SASL authentication failed"


def _app_dsn(h: Harness, listener: str = "read-write") -> str:
    return h.plan.dsn(listener, h.passwords.app, h.config.citus.app_user)  # type: ignore[arg-type]


def test_dcs_only_settings_apply_on_every_member(cluster: Harness) -> None:
    for member in cluster.plan.members:
        dsn = cluster.member_dsn(member.name)
        for setting, value in DCS_SETTINGS.items():
            assert _show(dsn, setting) == str(value), (member.name, setting)


def test_a_changed_dcs_setting_reaches_the_running_cluster(cluster: Harness) -> None:
    """bootstrap.dcs is read once; provisioning PATCHes /config and reports who needs a restart."""
    target = cluster.target
    wanted = {g: {**dcs, "postgresql": {**dcs["postgresql"], "parameters": {
        **dcs["postgresql"]["parameters"], "max_locks_per_transaction": 256}}} for g, dcs in target.dcs.items()}
    result = provision(replace(target, dcs=wanted), read_migrations(SQL_DIR))
    assert set(result.pending_restart) == {m.name for m in cluster.plan.members}
    leader = cluster.leader(1)
    config = cluster.rest(f"{cluster.patroni_url(leader)}/config")
    assert config["postgresql"]["parameters"]["max_locks_per_transaction"] == 256
    assert config_patch(config, wanted["1"]) == {}  # nothing left to change
    # Put it back (the restart is what an operator would schedule): the value that runs is wanted again, so
    # Patroni stops asking for a restart.
    provision(target, read_migrations(SQL_DIR))
    assert cluster.rest(f"{cluster.patroni_url(leader)}/config")["postgresql"]["parameters"][
        "max_locks_per_transaction"] == 128
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
        cluster.rest(f"{cluster.patroni_url(m.name)}/patroni").get("pending_restart") for m in cluster.plan.members
    ):
        time.sleep(1)
    assert not [m.name for m in cluster.plan.members
                if cluster.rest(f"{cluster.patroni_url(m.name)}/patroni").get("pending_restart")]


def test_app_role_cannot_write_bookkeeping_or_postgis_tables(cluster: Harness) -> None:
    with psycopg.connect(_app_dsn(cluster), autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        for statement in (
            "INSERT INTO citus_cluster_migrations (name, checksum) VALUES ('9999_evil.sql', 'x')",
            "DELETE FROM citus_cluster_migrations",
            "UPDATE citus_cluster_settings SET value = '1'",
            "INSERT INTO spatial_ref_sys (srid, auth_name) VALUES (990000, 'evil')",
            "DELETE FROM spatial_ref_sys WHERE srid = 4326",
            "CREATE TABLE evil (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # Reading the bookkeeping is refused too; PostGIS's reference data stays readable (ST_Transform needs it).
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM citus_cluster_settings")
        assert conn.execute("SELECT count(*) > 0 FROM spatial_ref_sys WHERE srid = 4326").fetchone() == (True,)


def test_app_role_runs_the_seed_workload(cluster: Harness) -> None:
    now = datetime.now(timezone.utc)
    with psycopg.connect(_app_dsn(cluster), autocommit=True) as conn:
        conn.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 500})
        for query in workload.QUERIES:
            conn.execute(query.sql.format(table=workload.TABLE), {"now": now}).fetchall()
        conn.execute(f"UPDATE {workload.TABLE}_data SET region_code = 'region_north' WHERE vehicle_id = 1")
        conn.execute(f"DELETE FROM {workload.DATA_TABLE} WHERE vehicle_id = 2")
    with psycopg.connect(_app_dsn(cluster, "read-only"), autocommit=True) as conn:  # the app's ro DSN reads
        assert isinstance(conn.execute(f"SELECT count(*) FROM {workload.TABLE}").fetchone()[0], int)


def test_tables_added_by_a_later_migration_are_granted(cluster: Harness) -> None:
    files = [*read_migrations(SQL_DIR), *_later_migration()]
    result = provision(cluster.target, files)
    assert "fleet_notes" in result.app_tables and "citus_cluster_migrations" not in result.app_tables
    with psycopg.connect(_app_dsn(cluster), autocommit=True) as conn:
        conn.execute("INSERT INTO fleet_notes (vehicle_id, note) VALUES (1, 'ok')")
        assert conn.execute("SELECT count(*) FROM fleet_notes").fetchone() == (1,)


def _later_migration() -> list[Migration]:
    return [Migration("9000_fleet_notes.sql", "CREATE TABLE fleet_notes (vehicle_id bigint, note text);\n"
                      "SELECT create_distributed_table('fleet_notes', 'vehicle_id');\n")]


def test_our_verifier_is_libpqs_for_the_same_salt(cluster: Harness) -> None:
    with psycopg.connect(cluster.dsn()) as conn:
        theirs = conn.pgconn.encrypt_password(b"p\xc3\xa4ss word", b"app", b"scram-sha-256").decode()
    iterations, salt = theirs.split("$")[1].split(":")
    assert scram_verifier("päss word", base64.b64decode(salt), int(iterations)) == theirs


def test_rotating_every_database_password_on_a_running_cluster(cluster: Harness) -> None:
    old = cluster.passwords
    leaders = {g: cluster.leader(g) for g in range(len(cluster.plan.groups))}
    # Log every statement on every leader while rotating: what provisioning sends must still hold no password.
    for name in leaders.values():
        _set_system(cluster, name, "log_statement", "all")
    try:
        new = Passwords(superuser="su-" + "x" * 20 + "Rotated1", replication="re-" + "y" * 20 + "Rotated2",
                        rest_api="ra-" + "z" * 20 + "Rotated3", stats=old.stats, app="ap-" + "w" * 20 + "Rotated4",
                        monitoring=old.monitoring, pooler="po-" + "v" * 20 + "Rotated5")
        files = [*read_migrations(SQL_DIR), *_later_migration()]
        # Opened with the old app password, straight to the coordinator leader: what must go on is the session and
        # Citus's node connections under it.
        leader = cluster.member(cluster.leader(0))
        session = psycopg.connect(cluster.plan.member_dsn(leader, old.app, cluster.config.citus.app_user),
                                  autocommit=True)
        # And one through the read-write port, i.e. transaction-pooled by the leader's PgBouncer, which needs a new
        # server connection after the rotation (reloading PgBouncer's auth file drops its idle ones) and opens it
        # with the role's latest SCRAM keys from a client login.
        pooled = psycopg.connect(_app_dsn(cluster), autocommit=True, prepare_threshold=None)
        pooled.execute("SELECT 1")
        started = time.monotonic()
        result = cluster.rotate_passwords(new, files)
        took = time.monotonic() - started
    finally:
        for name in leaders.values():
            _set_system(cluster, name, "log_statement", None)
    print(f"rotation took {took:.1f} s: {result.passwords_changed}")
    with session:  # sessions open across the rotation go on (Citus's node connections included)
        session.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 10})
    with pooled:
        waited = _statement_time(pooled, workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 10})
    print(f"a pooled session opened before the rotation ran its next statement in {waited:.2f} s")
    assert any(SUPERUSER in c for c in result.passwords_changed)
    assert any(REPLICATION_USER in c for c in result.passwords_changed)

    rw = cluster.dsn()
    with pytest.raises(psycopg.OperationalError, match=REFUSED):
        psycopg.connect(with_password(rw, old.superuser), connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError, match=REFUSED):
        psycopg.connect(with_password(_app_dsn(cluster), old.app), connect_timeout=5).close()
    with psycopg.connect(_app_dsn(cluster), autocommit=True) as conn:  # new app password, distributed query
        conn.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 50})
        assert conn.execute(f"SELECT count(*) FROM {workload.TABLE}").fetchone()[0] > 0
    _assert_replication_role_rotated(cluster, old.replication, new.replication)
    _assert_rest_api_rotated(cluster, old.rest_api, new.rest_api)
    _assert_delivered_files_are_private(cluster, new)
    _assert_worker_failover_keeps_pg_dist_node(cluster)
    _assert_no_password_in_logs(cluster, [*old.as_dict().values(), *new.as_dict().values()])


def test_wal_receivers_log_in_with_the_rotated_replication_password(cluster: Harness) -> None:
    """A replication-password rotation is a reload: PostgreSQL keeps running, the streaming sessions go on, and
    a WAL receiver that has to connect again (here: its walsender terminated on the leader right after the
    rotation returned) logs in with the new password at its first attempt."""
    old = cluster.passwords
    new = replace(old, replication="re-" + "v" * 20 + "Rotated5")
    postmasters = {m.name: cluster.postmaster_pid(m.name) for m in cluster.plan.members}
    started = time.monotonic()
    cluster.rotate_passwords(new, [*read_migrations(SQL_DIR), *_later_migration()])
    took = time.monotonic() - started
    assert {m.name: cluster.postmaster_pid(m.name) for m in cluster.plan.members} == postmasters  # no restart
    refused_before = _replication_logins_refused(cluster)
    reconnected = _assert_replicas_stream_after_reconnecting(cluster)
    print(f"replication-password rotation took {took:.1f} s; every replica streamed again {reconnected:.1f} s "
          "after its walsender was terminated")
    assert _replication_logins_refused(cluster) == refused_before  # no WAL receiver tried the old password
    _assert_replication_role_rotated(cluster, old.replication, new.replication)


def test_stats_password_rotation_reloads_haproxy_without_cutting_a_session(cluster: Harness) -> None:
    """HAProxy reads the stats password from its second file; the rotation rewrites it and HAProxy's launcher
    (the Docker container's entrypoint too) sends SIGUSR2 to the master: the same master goes on, a session opened
    through it before keeps its backend, and the stats page and /metrics take only the new password (one with
    every character HAProxy's syntax treats specially)."""
    old = cluster.passwords
    new = replace(old, stats="""St'ats "$HOME" \\ #rotated """ + "q" * 12)
    balancer = cluster.procs[cluster.plan.balancer.name].pid  # the launcher
    master = _haproxy_master(balancer)
    url, ca = cluster.plan.stats_url, cluster.ca_file
    with psycopg.connect(cluster.dsn(), autocommit=True) as session:
        pid = session.execute("SELECT pg_backend_pid()").fetchone()[0]
        started = time.monotonic()
        cluster.rotate_passwords(new, [*read_migrations(SQL_DIR), *_later_migration()])
        took = time.monotonic() - started
        assert session.execute("SELECT pg_backend_pid()").fetchone()[0] == pid  # the same session, not a new one
    print(f"rotation with a new stats password took {took:.1f} s")
    assert cluster.procs[cluster.plan.balancer.name].pid == balancer and cluster.procs[
        cluster.plan.balancer.name].alive()
    assert _haproxy_master(balancer) == master
    assert stats_status(url, old.stats, ca) == 401
    assert stats_status(url, new.stats, ca) == 200
    assert stats_status(url.rstrip("/") + METRICS_PATH, new.stats, ca) == 200
    assert stats_status(url.rstrip("/") + METRICS_PATH, old.stats, ca) == 401
    mode = Path(cluster.plan.balancer.secrets_path).stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)


def _statement_time(conn: psycopg.Connection, statement: str, params: dict[str, object],
                    limit: float = 15.0) -> float:
    """Run `statement`, given up after `limit` seconds (a session stalled on PgBouncer's pool would wait for
    query_wait_timeout, 120 s, and PgBouncer drops a cancel request for a client without a server connection);
    returns how long it took."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn.execute(statement, params)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RDWR)  # ends the waiting statement
        worker.join(10)
        pytest.fail(f"the statement still waited for a server connection after {limit:.0f} s")
    if errors:
        raise errors[0]
    return time.monotonic() - started


def stats_status(url: str, password: str, ca: str) -> int:
    return basic_status(url, STATS_USER, password, ca)


def _haproxy_master(launcher: int) -> int:
    """HAProxy's master: the launcher's child named haproxy."""
    pids = [pid for pid in processes.children(launcher) if Path(f"/proc/{pid}/comm").read_text().strip() == "haproxy"]
    assert len(pids) == 1, f"expected one HAProxy master under the launcher {launcher}, found {pids}"
    return pids[0]


def _assert_delivered_files_are_private(cluster: Harness, new: Passwords[str]) -> None:
    """The files the rotation wrote through PostgreSQL (as the Docker stack's provisioning does) hold the new
    passwords and are the server user's, 0600, as PostgreSQL creates files."""
    user = processes.server_user()
    server = os.getuid() if user is None else user.pw_uid
    for s in all_member_secrets(cluster.plan, new):
        for path, text in ((s.patroni_file, s.patroni_text), (s.pooler_file, s.pooler_text)):
            if not path:
                continue
            info = os.stat(path)
            assert (oct(info.st_mode & 0o777), info.st_uid) == (oct(0o600), server), path
            assert Path(path).read_text() == text, path


def _set_system(cluster: Harness, member: str, setting: str, value: str | None) -> None:
    with psycopg.connect(cluster.member_dsn(member), autocommit=True) as conn:
        if value is None:
            conn.execute(f"ALTER SYSTEM RESET {setting}")
        else:
            conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")


def _assert_replicas_stream_after_reconnecting(cluster: Harness) -> float:
    """Terminate every walsender on every leader (a replica's own pg_terminate_backend cannot stop its WAL
    receiver: that is an auxiliary process, refused with a warning), then wait until every replica streams again
    with a new WAL receiver, as PostgreSQL and Patroni see it. Returns the seconds that took."""
    replicas = [m.name for m in cluster.plan.members if cluster.role_of(m.name) != "primary"]
    before = {}
    for name in replicas:
        with psycopg.connect(cluster.member_dsn(name), autocommit=True) as conn:
            before[name] = conn.execute("SELECT pid FROM pg_stat_wal_receiver WHERE status = 'streaming'"
                                        ).fetchone()[0]
    started = time.monotonic()
    for group in range(len(cluster.plan.groups)):
        with psycopg.connect(cluster.member_dsn(cluster.leader(group)), autocommit=True) as conn:
            ended = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_replication "
                                 "WHERE usename = %s", (REPLICATION_USER,)).fetchone()[0]
        assert ended == len(cluster.plan.groups[group]) - 1, (group, ended)
    deadline, streaming = time.monotonic() + 60, set()
    while time.monotonic() < deadline and streaming != set(replicas):
        for name in set(replicas) - streaming:
            with psycopg.connect(cluster.member_dsn(name), autocommit=True) as conn:
                row = conn.execute("SELECT pid, status FROM pg_stat_wal_receiver").fetchone()
            if row is not None and row[0] != before[name] and row[1] == "streaming":
                streaming.add(name)
        time.sleep(0.2)
    took = time.monotonic() - started
    assert streaming == set(replicas), f"not streaming again: {set(replicas) - streaming}"
    states = {name: cluster.rest(f"{cluster.patroni_url(name)}/patroni").get("replication_state")
              for name in replicas}
    assert set(states.values()) == {"streaming"}, states
    return took


def _replication_logins_refused(cluster: Harness) -> int:
    """How many replication logins the members' PostgreSQL logs record as refused for a wrong password."""
    needle = f'password authentication failed for user "{REPLICATION_USER}"'
    return sum(path.read_text(errors="replace").count(needle)
               for m in cluster.plan.members for path in Path(m.data_dir).glob("log/*"))


def _assert_replication_role_rotated(cluster: Harness, old: str, new: str) -> None:
    """Replicas still stream (their sessions survive), and the replication role takes only the new password."""
    replicas = [m.name for m in cluster.plan.members if cluster.role_of(m.name) != "primary"]
    states = [cluster.rest(f"{cluster.patroni_url(name)}/patroni").get("replication_state") for name in replicas]
    assert states == ["streaming"] * len(replicas), states
    leader = cluster.leader(0)
    member = cluster.member(leader)
    base = f"host=127.0.0.1 port={member.postgres.port} user={REPLICATION_USER} replication=true connect_timeout=5"
    with pytest.raises(psycopg.OperationalError, match=REFUSED):
        psycopg.connect(f"{base} password={old}").close()
    psycopg.connect(f"{base} password={new}").close()


def _assert_rest_api_rotated(cluster: Harness, old: str, new: str) -> None:
    url = f"{cluster.patroni_url(cluster.leader(1))}/config"
    unchanged = {"ttl": cluster.rest(url)["ttl"]}  # a PATCH that changes nothing, to probe the credentials
    with pytest.raises(urllib.error.HTTPError) as refused:
        rest_send(url, unchanged, (RESTAPI_USER, old), method="PATCH", ca_file=cluster.ca_file)
    assert refused.value.code == 401
    answer = rest_send(url, unchanged, (RESTAPI_USER, new), method="PATCH", ca_file=cluster.ca_file)
    assert answer["ttl"] == unchanged["ttl"]


def _assert_worker_failover_keeps_pg_dist_node(cluster: Harness) -> None:
    old_leader = cluster.leader(1)
    cluster.kill_member(old_leader)
    try:
        deadline = time.monotonic() + 90
        new_leader = None
        while time.monotonic() < deadline:
            candidates = [m.name for m in cluster.plan.groups[1]
                          if m.name != old_leader and cluster.role_of(m.name) == "primary"]
            if candidates:
                new_leader = candidates[0]
                expected = cluster.member(new_leader).postgres
                with citus_sql.connect(cluster.dsn()) as conn:
                    row = conn.execute("SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' "
                                       "AND groupid = 1").fetchone()
                if row == (expected.host, expected.port):
                    break
            time.sleep(1)
        assert new_leader is not None and row == (expected.host, expected.port)
        with psycopg.connect(_app_dsn(cluster), autocommit=True) as conn:  # Citus reaches the new leader
            conn.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 20})
    finally:
        cluster.start_member(old_leader)
        cluster.wait_member(old_leader, "replica", timeout=120)


def _assert_no_password_in_logs(cluster: Harness, passwords: list[str]) -> None:
    logs = [*Path(cluster.base_dir, "logs").glob("*.log")]
    logs += [p for m in cluster.plan.members for p in Path(m.data_dir).glob("log/*")]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [p[:6] + "…" for p in passwords if p in text]
        assert not leaked, f"{path} holds passwords {leaked}"
