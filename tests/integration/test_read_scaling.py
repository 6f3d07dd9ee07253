"""Read scaling (issue 15, item 2) on real processes: reads through the read-only endpoint reach no primary.

How "no primary" is proven: every read runs against a distributed table of the test's own (`read_probe`), and
PostgreSQL counts each scan of each of its shards on the member that ran it (pg_stat_user_tables counts on hot
standbys too). pg_stat_statements would need shared_preload_libraries, which the plan owns (Citus first), so it
is not in the harness; the scan counters of a table nothing else touches serve the same purpose: after N reads
through the read-only endpoint the workers' standbys counted N scans of every shard, the primaries none, and the
session itself ran on a coordinator standby (pg_is_in_recovery()).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from cluster.local.harness import Harness
from cluster.provision import wait_healthy

pytestmark = pytest.mark.citus

PROBE = "read_probe"
ROWS = 2000
READS = 20
MARKER = "/* read-scaling probe */"


def app_ro(h: Harness) -> str:
    """The application role's read-only DSN, exactly as the stack exports it (app_ro_dsn)."""
    return h.plan.dsn("read-only", h.passwords.app, h.config.citus.app_user)


def leader_dsn(h: Harness) -> str:
    """Straight to the coordinator leader's PostgreSQL, past PgBouncer. The scan counts below need it: a backend
    PgBouncer keeps open after its client left (and Citus's connections from it to the workers) reports its scans
    only when idle for 10 s (PostgreSQL 15), so they would land in a later measurement; one that ends reports at
    once."""
    return h.member_dsn(h.leader(0))


@pytest.fixture
def probe(harness: Harness) -> Iterator[Harness]:
    """A distributed table only this test reads (the harness fixture drops it afterwards)."""
    with psycopg.connect(leader_dsn(harness), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {PROBE} (id int PRIMARY KEY, v text)")
        conn.execute(f"SELECT create_distributed_table('{PROBE}', 'id')")
        conn.execute(f"INSERT INTO {PROBE} SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g")
        conn.execute(f"GRANT SELECT ON {PROBE} TO {harness.config.citus.app_user}")
    wait_readable(harness)
    yield harness


def wait_readable(h: Harness, timeout: float = 60.0) -> None:
    """Until the read-only endpoint answers with every row (standbys replay the table; failovers settle)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(app_ro(h), autocommit=True, connect_timeout=3) as conn:
                if conn.execute(f"SELECT count(*) FROM {PROBE}").fetchone() == (ROWS,):
                    return
        except psycopg.Error as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"the read-only endpoint did not serve {PROBE} within {timeout:.0f} s: {last}")


def scans(h: Harness) -> dict[str, int]:
    """Scans of the probe's relations (its shards on workers, its shell on the coordinator) per member."""
    counted = {}
    for m in h.plan.members:
        try:
            conn = psycopg.connect(h.member_dsn(m.name), autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:  # a member the test stopped: it serves nothing
            counted[m.name] = 0
            continue
        with conn:
            conn.execute("SET citus.show_shards_for_app_name_prefixes = '*'")  # Citus hides shards otherwise
            counted[m.name] = int(conn.execute(
                "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables "
                "WHERE relname ~ %s", (f"^{PROBE}(_[0-9]+)?$",)).fetchone()[0])
    return counted


def read_through_ro(h: Harness, reads: int = READS) -> dict[str, object]:
    """`reads` fan-out counts and as many single-shard lookups through app_ro_dsn, in one session."""
    with psycopg.connect(app_ro(h), autocommit=True) as conn:
        recovery, port, setting = conn.execute(
            "SELECT pg_is_in_recovery(), inet_server_port(), current_setting('citus.use_secondary_nodes')").fetchone()
        for i in range(reads):
            assert conn.execute(f"SELECT {MARKER} count(*) FROM {PROBE}").fetchone() == (ROWS,)
            assert conn.execute(f"SELECT {MARKER} v FROM {PROBE} WHERE id = %s", (i + 1,)).fetchone() == (
                f"row {i + 1}",)
        # Refused wherever the session landed: on a standby as read-only, on the leader (fallback) by Citus first.
        with pytest.raises((psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InternalError),
                           match="writing to worker nodes is not currently allowed"):
            conn.execute(f"INSERT INTO {PROBE} VALUES (-1, 'must not land')")
    return {"recovery": recovery, "port": port, "setting": setting}


def settled_delta(h: Harness, before: dict[str, int], standbys: list[str], expected: int,
                  timeout: float = 30.0) -> dict[str, int]:
    """Scan deltas once the standbys counted `expected` scans (backends report them when they end, or within
    a second or so when idle), plus two more seconds for any late report from elsewhere."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = scans(h)
        if sum(now[s] - before[s] for s in standbys) >= expected:
            break
        time.sleep(0.5)
    time.sleep(2)
    now = scans(h)
    return {name: now[name] - before[name] for name in now}


def shard_count(h: Harness) -> int:
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = %s::regclass",
                                (PROBE,)).fetchone()[0])


def roles(h: Harness) -> dict[str, str | None]:
    """Each member's role as its Patroni says; None for a member that is down."""
    found: dict[str, str | None] = {}
    for m in h.plan.members:
        try:
            found[m.name] = h.role_of(m.name)
        except OSError:  # its Patroni does not answer (stopped)
            found[m.name] = None
    return found


def assert_reads_touch_no_primary(h: Harness, coordinator: str = "replica") -> dict[str, int]:
    """N reads through app_ro_dsn ran on a coordinator `coordinator` (replica; primary when HAProxy fell back to
    the leader) and read every shard on the workers' standbys, no shard on a primary."""
    current = roles(h)
    primaries = [n for n, r in current.items() if r == "primary"]
    worker_standbys = [m.name for m in h.plan.members if m.group != 0 and current[m.name] == "replica"]
    before = scans(h)
    session = read_through_ro(h)
    coordinator_ports = {h.member(n).postgres.port: n for n in (m.name for m in h.plan.coordinators)}
    assert session["recovery"] is (coordinator == "replica"), session  # where the session ran
    assert current[coordinator_ports[session["port"]]] == coordinator, session
    assert session["setting"] == "always"
    # Each count(*) scans every shard once, each lookup one shard: on the workers' standbys only.
    delta = settled_delta(h, before, worker_standbys, READS * shard_count(h) + READS)
    assert {n: delta[n] for n in primaries} == {n: 0 for n in primaries}, delta
    assert sum(delta[s] for s in worker_standbys) >= READS * shard_count(h) + READS, delta
    return delta


def secondaries_match_running_replicas(h: Harness) -> bool:
    """pg_dist_node (on the coordinator leader) names every group's leader as primary and exactly its running
    replicas as secondaries (what differs is printed: the -s output of a failed run says which row)."""
    current = roles(h)
    expected = {(m.group, m.postgres.port, "primary" if current[m.name] == "primary" else "secondary")
                for m in h.plan.members if current[m.name] in ("primary", "replica")}
    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        found = {(g, p, r) for g, p, r in conn.execute(
            "SELECT groupid, nodeport, noderole::text FROM pg_dist_node").fetchall()}
    if found != expected:
        print(f"pg_dist_node {sorted(found)} != Patroni {sorted(expected)} (roles {current})")
    return found == expected


def test_reads_through_the_read_only_endpoint_touch_no_primary(probe: Harness) -> None:
    # Provisioning registered every standby; one a test before restarted, Patroni re-registers within a few of
    # its loops once it streams again (measured: under 5 s), not before the member is back.
    wait_for(lambda: secondaries_match_running_replicas(probe), 30, "pg_dist_node naming every running standby")
    delta = assert_reads_touch_no_primary(probe)
    # Against the same reads through the read-write endpoint, which do reach the worker primaries (the counter
    # is live, so the zero above means something).
    primaries = [n for n, r in roles(probe).items() if r == "primary" and probe.member(n).group != 0]
    before = scans(probe)
    with psycopg.connect(leader_dsn(probe), autocommit=True) as conn:
        for _ in range(READS):
            conn.execute(f"SELECT {MARKER} count(*) FROM {PROBE}")
    rw_delta = settled_delta(probe, before, primaries, READS * shard_count(probe))
    assert sum(rw_delta[p] for p in primaries) >= READS * shard_count(probe), (delta, rw_delta)


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (psycopg.Error, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "switchover"])
def test_reads_stay_off_primaries_after_a_worker_failover(probe: Harness, how: str) -> None:
    """A worker leader killed (and back as a replica, as Docker's restart policy brings it) or switched over:
    Patroni swaps the group's pg_dist_node rows (new leader primary, old leader secondary), and reads through
    the read-only endpoint again touch no primary: the old leader, now a standby, serves them."""
    h = probe
    victim = h.leader(1)
    if how == "kill":
        h.kill_member(victim)
        wait_for(lambda: any(h.role_of(m.name) == "primary" for m in h.plan.groups[1] if m.name != victim), 60,
                 "new leader in group 1")
        h.start_member(victim)
    else:
        h.switchover(victim)
    h.wait_member(victim, "replica", timeout=120)
    wait_healthy(h.target, timeout=120)
    assert h.leader(1) != victim
    wait_for(lambda: secondaries_match_running_replicas(h), 60, "pg_dist_node naming the new leader as primary "
             "and the old one as secondary")
    wait_readable(h)
    delta = assert_reads_touch_no_primary(h)
    assert delta[victim] > 0, delta  # the old leader, now a standby, served group 1's shards


def test_read_your_writes_through_the_standbys_needs_remote_apply(probe: Harness) -> None:
    """Quorum commit acknowledges a write once a standby has flushed it, not applied it: a read on the standby
    right after may miss it. A writer whose next read goes through the read-only endpoint commits with
    synchronous_commit = remote_apply, propagated to the worker it writes on (citus.propagate_set_commands):
    then every write is visible there at once, even under other writers' load."""
    h = probe
    stop = threading.Event()

    def load() -> None:  # other writers keep the standbys replaying
        with psycopg.connect(h.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO read_probe_load SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")

    with psycopg.connect(h.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE read_probe_load (id bigint, payload text)")
        conn.execute("SELECT create_distributed_table('read_probe_load', 'id')")
    loaders = [threading.Thread(target=load) for _ in range(2)]
    for t in loaders:
        t.start()
    misses = {}
    try:
        for mode in ("flush (default)", "remote_apply"):
            missed = 0
            with psycopg.connect(h.dsn(), autocommit=True) as writer, \
                    psycopg.connect(app_ro(h), autocommit=True) as reader:
                writer.execute("SET citus.propagate_set_commands = 'local'")
                for i in range(200):
                    key = ROWS + 1 + i + (1000 if mode == "remote_apply" else 0)
                    with writer.transaction():
                        if mode == "remote_apply":
                            writer.execute("SET LOCAL synchronous_commit = remote_apply")
                        writer.execute(f"INSERT INTO {PROBE} VALUES (%s, 'written')", (key,))
                    if reader.execute(f"SELECT count(*) FROM {PROBE} WHERE id = %s", (key,)).fetchone() == (0,):
                        missed += 1
            misses[mode] = missed
    finally:
        stop.set()
        for t in loaders:
            t.join()
    print(f"read-your-writes misses of 200 under load: {misses}")
    assert misses["remote_apply"] == 0, misses


@pytest.mark.slow
def test_without_a_coordinator_standby_the_read_only_endpoint_falls_back_to_the_leader(probe: Harness) -> None:
    """The chosen fallback (README, Read scaling): the leader's coordinator plans, the shards are still read on
    the workers' standbys, writes are still refused."""
    h = probe
    standby = next(m.name for m in h.plan.coordinators if h.role_of(m.name) == "replica")
    h.stop_member(standby)  # the fixture starts it again after the test

    def on_leader() -> bool:
        with psycopg.connect(app_ro(h), autocommit=True, connect_timeout=3) as conn:
            return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)

    wait_for(on_leader, 30, "read-only session on the coordinator leader")
    assert_reads_touch_no_primary(h, coordinator="primary")
