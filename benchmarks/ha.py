"""HA drills: break one piece of a running cluster under write and read load, measure, check that nothing is lost.

The successor of the seed's ha-benchmark.sh. N writers insert rows with unique ids through the rw DSN (each
id is recorded as acknowledged only once COMMIT returned), readers query through the ro DSN, both log every
attempt with its time. Then the drill kills something, brings the cluster back to full health without a
person, and reports:
- time from the kill to the first successful write (and read);
- time until every group has a leader again and the killed member rejoined as a replica;
- acknowledged writes and how many of them are in the table afterwards (lost = acknowledged but missing);
- the seed's figure, query success rate per phase (baseline / during failure / after recovery).

Two kinds of cluster, one interface (`DrillCluster`): a harness directory (kills PIDs) or a Pulumi stack on
Docker (`docker kill`), the latter found through the stack's published Patroni ports.

Partition drills (`partition-*`, `etcd-quorum-loss-*`) need the namespaced harness (`--namespaces`): they cut
hosts off the network with DROP rules instead of killing anything. Every drill records its operations as a
history (benchmarks/history.py) and reports the checker's verdict: lost or half-committed writes, writes
acknowledged on two timelines, the split-brain window measured by probing every member of the victim's group
directly, and reads on the read-write endpoint going back in time.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from benchmarks import history
from benchmarks.errors import BenchmarkError
from cluster.errors import ClusterError, UsageError
from cluster.local import network
from cluster.provision.rest import rest_json
from cluster.provision.rest import role as member_role

PARTITIONS = ("partition-coordinator-leader", "partition-worker-leader", "partition-coordinator-worker",
              "etcd-quorum-loss-failsafe-off", "etcd-quorum-loss-failsafe-on")
SCENARIOS = ("coordinator-leader-kill", "worker-leader-kill", "coordinator-leader-freeze", "postgres-crash",
             "switchover", "haproxy-restart", "etcd-member-loss", *PARTITIONS)
# Scenarios where the victim's group must elect another leader before the victim may come back.
LEADER_LOSS = ("coordinator-leader-kill", "worker-leader-kill", "coordinator-leader-freeze",
               "partition-coordinator-leader", "partition-worker-leader")
# Partitions nobody fails over from: held this long (seconds, > ttl), then healed.
HOLD = {"partition-coordinator-worker": 15.0, "etcd-quorum-loss-failsafe-off": 30.0,
        "etcd-quorum-loss-failsafe-on": 30.0}
PROBE_INTERVAL = 0.1
TABLE = "ha_drill"


class DrillCluster(Protocol):
    """What a drill needs from a cluster, whatever runs it."""

    rw_dsn: str
    ro_dsn: str
    citus: bool

    def groups(self) -> list[int]: ...
    def members(self, group: int) -> list[str]: ...
    def role(self, member: str) -> str | None: ...  # "primary", "replica" or None when unreachable
    def state(self, member: str) -> dict[str, Any]: ...
    def address(self, member: str) -> tuple[str, int]: ...  # what pg_dist_node registers for it
    def kill(self, member: str) -> None: ...  # like `docker kill`: Patroni and PostgreSQL die at once
    def freeze(self, member: str) -> None: ...  # like `docker pause`: alive but silent, as if partitioned
    def thaw(self, member: str) -> None: ...
    def crash_postgres(self, member: str) -> None: ...
    def restart(self, member: str) -> None: ...
    def restart_balancer(self) -> None: ...
    def kill_etcd(self) -> str: ...
    def restart_etcd(self, name: str) -> None: ...
    def switchover(self, group: int, leader: str) -> None: ...
    # Partitions (namespaced harness only):
    def member_dsn(self, member: str) -> str: ...  # straight to the member, not through HAProxy
    def host_address(self, name: str) -> str: ...  # a member's or etcd member's address
    def etcd_members(self) -> list[str]: ...
    def cut(self, name: str, peers: list[str] | None) -> None: ...  # from these addresses, or from everything
    def heal(self, name: str) -> None: ...
    def set_failsafe(self, on: bool) -> bool: ...  # returns what it was


@dataclass
class Attempt:
    kind: str  # "write", "read" (ro endpoint, SELECT 1), "rw-read" (rw endpoint, row count) or "probe"
    client: int
    started: float
    finished: float
    ok: bool
    error: str = ""
    value: int | None = None  # write: its id; rw-read: the count seen; probe: 1 if the member accepts writes
    node: str = ""  # write/rw-read: the server the session reached; probe: the member probed
    group: int = 0  # probe: the member's group


@dataclass
class DrillResult:
    scenario: str
    synchronous: bool  # as found on the coordinator leader (synchronous_standby_names set)
    writers: int
    readers: int
    victim: str
    kill_at: float  # seconds since the drill's start
    first_write_after: float | None  # seconds from the kill
    first_read_after: float | None
    writes_all_ok_after: float  # the last failed write after the kill: every shard writable again from here
    leader_elected_after: float  # for leader kills: another member leads the victim's group
    recovered_after: float | None  # every group led, victim back as a streaming replica
    new_leader: str | None
    acknowledged: int
    found: int
    lost_ids: list[int]
    unacknowledged_but_committed: int  # a write whose COMMIT reply was lost in the failover: in doubt, not lost
    phases: dict[str, dict[str, float]]
    errors: dict[str, int]
    attempts: list[Attempt] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)  # benchmarks.history.Verdict.summary()
    healed_after: float | None = None  # partitions: seconds from the cut to healing it
    first_write_after_heal: float | None = None  # partitions held until healed: writes back from the heal

    @property
    def lost(self) -> int:
        return len(self.lost_ids)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("attempts")
        data["lost"] = self.lost
        return data


class Load:
    """Writer and reader threads, each with its own connection, logging every attempt.

    `rw_readers` count the rows through the rw endpoint (for the history's read check); `pairs` makes each
    write one transaction of two rows, id and -id, on different shards (two-phase commit across groups);
    `probes` (group, member) ask each member directly, 10 times a second, whether it accepts writes.
    """

    def __init__(self, cluster: DrillCluster, writers: int, readers: int, start: float, *, rw_readers: int = 0,
                 pairs: bool = False, probes: tuple[tuple[int, str], ...] = ()) -> None:
        self.cluster, self.start, self.pairs = cluster, start, pairs
        self.attempts: list[Attempt] = []
        self.acknowledged: set[int] = set()
        self.tried: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(writers)]
        self._threads += [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(readers)]
        self._threads += [threading.Thread(target=self._rw_read, args=(i,), daemon=True) for i in range(rw_readers)]
        self._threads += [threading.Thread(target=self._probe, args=(i, g, m), daemon=True)
                          for i, (g, m) in enumerate(probes)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def _loop(self, kind: str, client: int, dsn: str, work: Callable[[psycopg.Connection], int | None],
              pause: float = 0.02, node: str = "", group: int = 0, **connect: Any) -> None:
        """Run `work` again and again; record each attempt with the value it returns and the server it reached."""
        conn: psycopg.Connection | None = None
        server = node
        while not self._stop.is_set():
            began = time.monotonic() - self.start
            value: int | None = None
            try:
                if conn is None or conn.closed:
                    # prepare_threshold=None: no server-side prepares, which PgBouncer 1.18's transaction pooling
                    # (the read-write port, for an application role) cannot carry between transactions.
                    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2, prepare_threshold=None,
                                           **connect)
                    server = node or _server(conn)  # through HAProxy: whichever member it routed this session to
                value = work(conn)
                self._record(Attempt(kind, client, began, time.monotonic() - self.start, True, "", value, server,
                                     group))
                time.sleep(pause)
            except psycopg.Error as exc:
                self._record(Attempt(kind, client, began, time.monotonic() - self.start, False, _first_line(exc),
                                     getattr(exc, "_drill_value", None), server, group))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()

    def _write(self, client: int) -> None:
        sequence = iter(range(client * 1_000_000_000 + 1, (client + 1) * 1_000_000_000))

        def insert(conn: psycopg.Connection) -> int:
            row_id = next(sequence)
            with self._lock:
                self.tried.add(row_id)
            try:
                if self.pairs:  # one transaction, two shards: Citus commits it with two-phase commit
                    conn.execute(f"INSERT INTO {TABLE} (id, writer) VALUES (%s, %s), (%s, %s)",
                                 (row_id, client, -row_id, client))
                else:
                    conn.execute(f"INSERT INTO {TABLE} (id, writer) VALUES (%s, %s)", (row_id, client))
            except psycopg.Error as exc:
                exc._drill_value = row_id  # type: ignore[attr-defined]  # the failed write's id, for the history
                raise
            with self._lock:
                self.acknowledged.add(row_id)
            return row_id

        self._loop("write", client, self.cluster.rw_dsn, insert)

    def _read(self, client: int) -> None:
        self._loop("read", client, self.cluster.ro_dsn, lambda conn: conn.execute("SELECT 1").fetchone()[0])

    def _rw_read(self, client: int) -> None:
        def count(conn: psycopg.Connection) -> int:
            return int(conn.execute(f"SELECT count(*) FROM {TABLE} WHERE id > 0").fetchone()[0])

        self._loop("rw-read", client, self.cluster.rw_dsn, count, pause=0.1)

    def _probe(self, client: int, group: int, member: str) -> None:
        """Does `member` accept writes? Asked straight, not through HAProxy; a silent member is a failed probe
        after 1 s (tcp_user_timeout), not a hang."""
        def writable(conn: psycopg.Connection) -> int:
            return int(conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0])

        self._loop("probe", client, self.cluster.member_dsn(member), writable, pause=PROBE_INTERVAL,
                   node=member, tcp_user_timeout=1000, group=group)


def admin_dsn(cluster: DrillCluster) -> str:
    """Where the drill creates, counts and drops its table: the superuser's DSN, which is rw_dsn unless the
    cluster writes as another role (an application role, transaction-pooled by PgBouncer)."""
    return getattr(cluster, "admin_dsn", None) or cluster.rw_dsn


def prepare_table(cluster: DrillCluster) -> bool:
    """Create the drill's table; return whether the coordinator leader commits synchronously."""
    with psycopg.connect(admin_dsn(cluster), autocommit=True) as conn:
        synchronous = conn.execute("SELECT current_setting('synchronous_standby_names') <> ''").fetchone()[0]
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz DEFAULT now())")
        if cluster.citus:  # spread over every worker group, so a worker kill hits acknowledged rows
            conn.execute(f"SELECT create_distributed_table('{TABLE}', 'id')")
        writer = urlsplit(cluster.rw_dsn).username
        if writer and writer != urlsplit(admin_dsn(cluster)).username:
            conn.execute(sql.SQL("GRANT SELECT, INSERT ON TABLE {} TO {}").format(sql.Identifier(TABLE),
                                                                                 sql.Identifier(writer)))
    return bool(synchronous)


def leader_of(cluster: DrillCluster, group: int) -> str | None:
    leaders = [m for m in cluster.members(group) if cluster.role(m) == "primary"]
    return leaders[0] if len(leaders) == 1 else None


def fully_healthy(cluster: DrillCluster, victim: str | None) -> bool:
    """Every group has exactly one leader and every other member (the victim included) streams from it."""
    for group in cluster.groups():
        if leader_of(cluster, group) is None:
            return False
        for member in cluster.members(group):
            state = cluster.state(member)
            if state.get("state") != "running":
                return False
            if member_role(state) == "replica" and state.get("replication_state") not in (None, "streaming"):
                return False
    return victim is None or cluster.role(victim) in ("primary", "replica")


def citus_leaders_registered(cluster: DrillCluster) -> bool:
    """pg_dist_node's primary row of every group points at that group's current leader."""
    if not cluster.citus:
        return True
    with psycopg.connect(admin_dsn(cluster), autocommit=True, connect_timeout=3) as conn:
        rows = conn.execute("SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary'")
        registered = {int(g): (host, int(port)) for g, host, port in rows.fetchall()}
    leaders = {g: leader_of(cluster, g) for g in cluster.groups()}
    return all(m is not None and registered.get(g) == cluster.address(m) for g, m in leaders.items())


def run_drill(
    cluster: DrillCluster,
    scenario: str,
    *,
    writers: int = 4,
    readers: int = 2,
    baseline: float = 5.0,
    after: float = 5.0,
    timeout: float = 120.0,
) -> DrillResult:
    """One drill from healthy to healthy; raises BenchmarkError if the cluster does not heal within `timeout`."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    _wait(lambda: fully_healthy(cluster, None), timeout, "the cluster to be healthy before the drill")
    synchronous = prepare_table(cluster)
    notes: list[str] = []
    partition = scenario in PARTITIONS
    failsafe_before: bool | None = None
    if scenario.startswith("etcd-quorum-loss"):
        failsafe = scenario.endswith("-on")
        failsafe_before = cluster.set_failsafe(failsafe)
        notes.append(f"Patroni failsafe_mode {'on' if failsafe else 'off'} for this drill")
    probes = tuple((g, m) for g in cluster.groups() for m in cluster.members(g)) if partition else ()
    start = time.monotonic()
    healed_at: float | None = None
    with Load(cluster, writers, readers, start, rw_readers=1 if partition else 0, pairs=partition and cluster.citus,
              probes=probes) as load:
        time.sleep(baseline)
        damage_at = time.monotonic() - start
        victim, restore = _break(cluster, scenario, notes)
        restore = _once(restore)  # whatever fails below, the damage is undone (a cut left in place breaks the rest)
        try:
            kill_at = time.monotonic() - start  # the damage is confirmed: nothing started later reached the victim
            if scenario in HOLD:  # nobody fails over from this one: hold it, then heal
                time.sleep(max(0.0, kill_at + HOLD[scenario] - (time.monotonic() - start)))
                restore()
                healed_at = time.monotonic() - start
                restore = _nothing
            first_write = _wait_first(load, "write", kill_at, timeout)
            first_read = _wait_first(load, "read", kill_at, timeout)
            group = _victim_group(cluster, victim)
            if scenario in LEADER_LOSS and group is not None:
                # Bring the old leader back only once another member leads; restarted earlier it would find its own
                # leader key still alive in etcd and simply resume, which measures a restart, not a failover. (A
                # partitioned old leader may still say "primary" over REST while its PostgreSQL shuts down and
                # refuses everyone: the probes, not this, judge split brain.)
                _wait(lambda: _new_leader(cluster, group, victim), timeout, f"a new leader of group {group}")
            failover_at = time.monotonic() - start
            restore()
            if partition and healed_at is None:
                healed_at = time.monotonic() - start
            member = victim if group is not None else None  # HAProxy and etcd are not Patroni members
            _wait(lambda: fully_healthy(cluster, member), timeout, f"the cluster to heal after {scenario}")
            _wait(lambda: citus_leaders_registered(cluster), timeout, "pg_dist_node to point at every group's leader")
            recovered = time.monotonic() - start - kill_at
            time.sleep(after)
        except BaseException:
            restore()
            if failsafe_before is not None:  # best effort: the cluster may be what failed
                with contextlib.suppress(ClusterError, OSError):
                    cluster.set_failsafe(failsafe_before)
            raise
    if failsafe_before is not None:
        cluster.set_failsafe(failsafe_before)
    attempts = sorted(load.attempts, key=lambda a: a.started)
    if partition and cluster.citus:
        notes.append(f"two-phase commit recovery after healing: {settle_prepared(cluster, timeout)} transactions")
    found = _found(cluster, load.tried | {-i for i in load.tried} if partition else load.tried)
    with psycopg.connect(admin_dsn(cluster), autocommit=True) as conn:
        conn.execute(f"DROP TABLE {TABLE}")  # counted; leave nothing behind in the cluster under test
    acknowledged = load.acknowledged
    verdict = history.check(to_history(attempts, pairs=partition and cluster.citus), found)
    failed_writes = [a.finished for a in attempts if a.kind == "write" and not a.ok and a.started >= kill_at]
    first_after_heal = None
    if healed_at is not None and scenario in HOLD:
        done = [a.finished for a in attempts if a.kind == "write" and a.ok and a.started >= healed_at]
        first_after_heal = round(min(done) - healed_at, 3) if done else None
    return DrillResult(
        scenario=scenario,
        synchronous=synchronous,
        writers=writers,
        readers=readers,
        victim=victim,
        kill_at=round(kill_at, 3),
        first_write_after=None if first_write is None else round(first_write - kill_at, 3),
        first_read_after=None if first_read is None else round(first_read - kill_at, 3),
        writes_all_ok_after=round(max(failed_writes) - kill_at, 3) if failed_writes else 0.0,
        leader_elected_after=round(failover_at - kill_at, 3),
        recovered_after=round(recovered, 3),
        new_leader=leader_of(cluster, group) if group is not None else None,
        acknowledged=len(acknowledged),
        found=len(found & acknowledged),
        lost_ids=sorted(acknowledged - found),
        unacknowledged_but_committed=len({i for i in found if i > 0} - acknowledged),
        phases=phase_rates(attempts, damage_at, kill_at + recovered),
        errors=error_counts(attempts),
        attempts=attempts,
        notes=notes,
        verdict=verdict.summary(),
        healed_after=None if healed_at is None else round(healed_at - kill_at, 3),
        first_write_after_heal=first_after_heal,
    )


def to_history(attempts: list[Attempt], pairs: bool = False) -> list[history.Op]:
    """The drill's attempts as the checker's operations (ro reads say nothing about the data: left out)."""
    kinds: dict[str, history.Kind] = {"write": "write", "rw-read": "read", "probe": "probe"}
    return [
        history.Op(kinds[a.kind], a.node if a.kind == "probe" else f"{a.kind}{a.client}", a.started, a.finished,
                   "ok" if a.ok else "fail", a.value, a.node, a.group, pair=pairs and a.kind == "write")
        for a in attempts if a.kind in kinds
    ]


def recover_prepared(cluster: DrillCluster) -> int:
    """Run the guarded two-phase commit recovery now (pg_cron runs it every minute, sql/0004): prepared
    transactions a partition left on a worker are committed or rolled back as the coordinator's record says,
    once every primary is out of recovery (0 while one is not)."""
    with psycopg.connect(admin_dsn(cluster), autocommit=True) as conn:
        return int(conn.execute("SELECT citus_cluster_recover_prepared_transactions()").fetchone()[0])


def prepared_left(cluster: DrillCluster) -> int:
    """Prepared transactions still waiting on the groups' leaders (standbys replay them too: not counted)."""
    left = 0
    for group in cluster.groups():
        leader = leader_of(cluster, group)
        if leader is None:
            raise ValueError(f"group {group} has no leader")
        with psycopg.connect(cluster.member_dsn(leader), autocommit=True, connect_timeout=5) as conn:
            left += int(conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()[0])
    return left


def settle_prepared(cluster: DrillCluster, timeout: float) -> int:
    """Recover two-phase commits until none is left, then return how many were resolved. One call is not
    enough: recovery skips a transaction whose coordinator session is still alive (it may yet commit it), and a
    row counted before that session finishes looks half-committed to the history checker."""
    resolved = 0

    def settled() -> bool:
        nonlocal resolved
        resolved += recover_prepared(cluster)
        return prepared_left(cluster) == 0

    _wait(settled, timeout, "prepared transactions left by the partition to be resolved")
    return resolved


def _nothing() -> None:
    return None


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """`action`, run at most once however often it is called."""
    done = threading.Event()

    def run() -> None:
        if not done.is_set():
            done.set()
            action()

    return run


def _new_leader(cluster: DrillCluster, group: int, victim: str) -> bool:
    return any(cluster.role(m) == "primary" for m in cluster.members(group) if m != victim)


def _break(cluster: DrillCluster, scenario: str, notes: list[str]) -> tuple[str, Callable[[], None]]:
    """Do the damage; return the victim's name and how to bring it back (what Docker's restart would do)."""
    if scenario in PARTITIONS:
        return _partition(cluster, scenario, notes)
    worker = scenario.startswith("worker")
    groups = cluster.groups()
    group = next((g for g in groups if g != 0), 0) if worker else 0
    leader = leader_of(cluster, group)
    if leader is None:
        raise BenchmarkError(f"group {group} has no single leader before the drill")
    if scenario in ("coordinator-leader-kill", "worker-leader-kill"):
        cluster.kill(leader)
        return leader, lambda: cluster.restart(leader)
    if scenario == "coordinator-leader-freeze":
        # The closest to a network partition loopback allows: the leader cannot renew its lock nor answer;
        # when it wakes up it must find it lost the lock and step down (no split brain), then rejoin.
        cluster.freeze(leader)
        notes.append("leader frozen (SIGSTOP / docker pause) until another member led, then thawed")
        return leader, lambda: cluster.thaw(leader)
    if scenario == "postgres-crash":
        cluster.crash_postgres(leader)
        return leader, lambda: None  # Patroni restarts or fails over on its own
    if scenario == "switchover":
        cluster.switchover(group, leader)
        return leader, lambda: None
    if scenario == "haproxy-restart":
        cluster.restart_balancer()
        return "haproxy", lambda: None
    name = cluster.kill_etcd()
    notes.append(f"killed etcd member {name}; the remaining members keep the quorum")
    return name, lambda: cluster.restart_etcd(name)


def _partition(cluster: DrillCluster, scenario: str, notes: list[str]) -> tuple[str, Callable[[], None]]:
    """Cut hosts off with DROP rules in their namespaces; return the victim and how to heal."""
    etcd = cluster.etcd_members()
    coordinator = leader_of(cluster, 0)
    if coordinator is None:
        raise BenchmarkError("the coordinator group has no single leader before the drill")
    if scenario == "partition-coordinator-leader":
        # Cut from etcd and its standbys, while HAProxy and the clients (the root namespace) still reach it.
        standbys = [m for m in cluster.members(0) if m != coordinator]
        cluster.cut(coordinator, [cluster.host_address(n) for n in etcd + standbys])
        notes.append(f"{coordinator} cut off from etcd and {', '.join(standbys)}; HAProxy still reaches it")
        return coordinator, lambda: cluster.heal(coordinator)
    if scenario == "partition-worker-leader":
        worker = leader_of(cluster, 1)
        if worker is None:
            raise BenchmarkError("worker group 1 has no single leader before the drill")
        cluster.cut(worker, None)
        notes.append(f"{worker} cut off from everything (etcd, its group, the coordinator, HAProxy)")
        return worker, lambda: cluster.heal(worker)
    if scenario == "partition-coordinator-worker":
        group, coordinators = cluster.members(1), cluster.members(0)
        for member in coordinators:
            cluster.cut(member, [cluster.host_address(n) for n in group])
        notes.append(f"{', '.join(coordinators)} cannot reach worker group 1 ({', '.join(group)}); "
                     "everything else is healthy")

        def heal_coordinators() -> None:
            for member in coordinators:
                cluster.heal(member)

        return coordinator, heal_coordinators
    if len(etcd) < 3:
        raise BenchmarkError(f"etcd quorum loss needs 3 etcd members, the cluster has {len(etcd)}")
    cut_off = etcd[1:]
    for name in cut_off:
        cluster.cut(name, None)
    notes.append(f"etcd members {', '.join(cut_off)} cut off from everything: {etcd[0]} alone has no quorum")

    def heal_etcd() -> None:
        for name in cut_off:
            cluster.heal(name)

    return etcd[0], heal_etcd


def _victim_group(cluster: DrillCluster, victim: str) -> int | None:
    return next((g for g in cluster.groups() if victim in cluster.members(g)), None)


def _wait_first(load: Load, kind: str, after: float, timeout: float) -> float | None:
    """Completion time of the first successful `kind` attempt that started after the kill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with load._lock:
            done = [a.finished for a in load.attempts if a.kind == kind and a.ok and a.started >= after]
        if done:
            return min(done)
        time.sleep(0.1)
    return None


def _found(cluster: DrillCluster, ids: set[int]) -> set[int]:
    with psycopg.connect(admin_dsn(cluster), autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {TABLE} WHERE id = ANY(%s)", (sorted(ids),)).fetchall()
    return {int(r[0]) for r in rows}


def phase_rates(attempts: list[Attempt], kill_at: float, recovered_at: float) -> dict[str, dict[str, float]]:
    """The seed's figure: success rate of queries per phase, for writes and reads separately."""
    phases = {"baseline": (0.0, kill_at), "during failure": (kill_at, recovered_at), "after recovery":
              (recovered_at, float("inf"))}
    result: dict[str, dict[str, float]] = {}
    for name, (lo, hi) in phases.items():
        row: dict[str, float] = {}
        for kind in ("write", "read"):
            inside = [a for a in attempts if a.kind == kind and lo <= a.started < hi]
            row[f"{kind}s"] = len(inside)
            row[f"{kind}_success_pct"] = round(100.0 * sum(a.ok for a in inside) / len(inside), 1) if inside else 0.0
        result[name] = row
    return result


def error_counts(attempts: list[Attempt], top: int = 8) -> dict[str, int]:
    """The most frequent error messages (first line), so a report says why attempts failed."""
    counts: dict[str, int] = {}
    for a in attempts:
        if not a.ok:
            counts[f"{a.kind}: {a.error[:120]}"] = counts.get(f"{a.kind}: {a.error[:120]}", 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:top])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, psycopg.Error, ValueError, KeyError) as exc:
            last = _first_line(exc)
        time.sleep(0.5)
    raise BenchmarkError(f"waited {timeout:.0f} s for {what}" + (f"; last error: {last}" if last else ""))


def _server(conn: psycopg.Connection) -> str:
    """The server a session reached (through HAProxy: whichever member it routed to)."""
    row = conn.execute("SELECT host(inet_server_addr()) || ':' || inet_server_port()").fetchone()
    return str(row[0]) if row and row[0] else ""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def patroni_state(url: str, ca_file: str | None) -> dict[str, Any]:
    """A member's GET /patroni over verified HTTPS, or {} while it cannot answer (a drill expects members to be
    unreachable)."""
    try:
        return rest_json(f"{url}/patroni", ca_file=ca_file)
    except (OSError, ValueError):
        return {}


class HarnessCluster:
    """A local cluster (cluster/local): damage by signals to the recorded PIDs."""

    def __init__(self, harness: Any) -> None:
        self.h = harness
        self.rw_dsn, self.ro_dsn = harness.dsn("read-write"), harness.dsn("read-only")
        self.citus = harness.citus

    @classmethod
    def from_dir(cls, directory: str) -> HarnessCluster:
        from cluster.local.harness import Harness

        return cls(Harness.load(directory))

    def groups(self) -> list[int]:
        return list(range(len(self.h.plan.groups)))

    def members(self, group: int) -> list[str]:
        return [m.name for m in self.h.plan.groups[group]]

    def state(self, member: str) -> dict[str, Any]:
        return patroni_state(self.h.patroni_url(member), self.h.ca_file)

    def role(self, member: str) -> str | None:
        return member_role(self.state(member))

    def address(self, member: str) -> tuple[str, int]:
        endpoint = self.h.member(member).postgres
        return endpoint.host, endpoint.port

    def kill(self, member: str) -> None:
        self.h.kill_member(member)

    def freeze(self, member: str) -> None:
        self.h.freeze_member(member)

    def thaw(self, member: str) -> None:
        self.h.thaw_member(member)

    def crash_postgres(self, member: str) -> None:
        self.h.kill_postgres(member)

    def restart(self, member: str) -> None:
        self.h.start_member(member)

    def restart_balancer(self) -> None:
        self.h.stop_haproxy()
        self.h.start_haproxy()

    def kill_etcd(self) -> str:
        name = self.h.plan.etcd[-1].name
        self.h.kill_process(name)
        return name

    def restart_etcd(self, name: str) -> None:
        self.h.restart_process(name)

    def switchover(self, group: int, leader: str) -> None:
        self.h.switchover(leader)

    def member_dsn(self, member: str) -> str:
        return self.h.member_dsn(member)

    def host_address(self, name: str) -> str:
        return self.h.host(name).address

    def etcd_members(self) -> list[str]:
        return [e.name for e in self.h.plan.etcd]

    def cut(self, name: str, peers: list[str] | None) -> None:
        network.cut(self.h.host(name), peers)

    def heal(self, name: str) -> None:
        network.heal(self.h.host(name))

    def set_failsafe(self, on: bool) -> bool:
        return bool(self.h.patch_dcs({"failsafe_mode": on}).get("failsafe_mode", False))


class DockerCluster:
    """A deployed stack: Patroni through its published REST ports, damage through the docker CLI."""

    def __init__(self, plan: Any, rw_dsn: str, ro_dsn: str) -> None:
        self.plan, self.rw_dsn, self.ro_dsn = plan, rw_dsn, ro_dsn
        self.citus = True
        self._members = {m.name: m for m in plan.members}

    def groups(self) -> list[int]:
        return list(range(len(self.plan.groups)))

    def members(self, group: int) -> list[str]:
        return [m.name for m in self.plan.groups[group]]

    def state(self, member: str) -> dict[str, Any]:
        url = f"https://{self.plan.client_host}:{self._members[member].published_api}"
        return patroni_state(url, self.plan.client_ca_file)

    def role(self, member: str) -> str | None:
        return member_role(self.state(member))

    def address(self, member: str) -> tuple[str, int]:
        endpoint = self._members[member].postgres
        return endpoint.host, endpoint.port

    def kill(self, member: str) -> None:
        _docker("kill", member)

    def freeze(self, member: str) -> None:
        _docker("pause", member)

    def thaw(self, member: str) -> None:
        _docker("unpause", member)

    def crash_postgres(self, member: str) -> None:
        pid_file = f"{self._members[member].data_dir}/postmaster.pid"
        _docker("exec", member, "sh", "-c", f"kill -9 $(head -1 {pid_file})")

    def restart(self, member: str) -> None:
        _docker("start", member)

    def restart_balancer(self) -> None:
        _docker("restart", self.plan.balancer.name)

    def kill_etcd(self) -> str:
        name = self.plan.etcd[-1].name
        _docker("kill", name)
        return name

    def restart_etcd(self, name: str) -> None:
        _docker("start", name)

    def switchover(self, group: int, leader: str) -> None:
        from cluster.plan import PATRONI_CONFIG_DIR, PATRONI_VENV

        ctl = f"{PATRONI_VENV}/bin/patronictl"
        args = ["exec", leader, ctl, "-c", PATRONI_CONFIG_DIR, "switchover", "--group", str(group)]
        _docker(*args, "--leader", leader, "--force")


    def _no_partitions(self, *args: object) -> Any:
        raise BenchmarkError("partition drills need the namespaced harness (python -m cluster local up --namespaces "
                             "and --harness DIR): Docker members share one network that this tool cannot cut")

    member_dsn = host_address = cut = heal = set_failsafe = _no_partitions

    def etcd_members(self) -> list[str]:
        return [e.name for e in self.plan.etcd]


def _docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=60)
