"""The `cpu` step (issue 16): where the CPU of one 5 km query goes, on the cluster and on the single node.

On a shared box, what many clients get is the box's cores divided by the CPU one query costs everywhere: the
client that parses the rows, HAProxy, PgBouncer, the session's backend and the shard backends it fans out to.
Wall-clock p50s on this box swing by ±30 % from one minute to the next; CPU seconds per query barely move. So
this step runs each side's query on one connection, reads every process's CPU time from /proc before and after,
and charges it by kind, less what each kind burns idle in as much time (measured just before). Each round also
runs the step's many clients on the side just measured, so the throughput ratio comes from windows taken in turn,
a minute apart at most, next to the ceiling the CPU split implies; medians over the rounds. It reads /proc of this
machine: the servers must run here (the harness, or containers on this host).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from benchmarks import steps
from benchmarks.progress import progress
from benchmarks.workload import Query

CLIENT, SESSION, POOLER, BALANCER, OTHER = (
    "client (the benchmark)", "session backend", "PgBouncer", "HAProxy", "other (Patroni, etcd, replication...)")
POSTMASTER = "/bin/postgres"


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    cpu_s: float


# ---- pure parts ---------------------------------------------------------------------------------------------
def data_dir(proc: Proc) -> str | None:
    """A postmaster's data directory (`postgres -D DIR ...`), None for any other process."""
    args = proc.cmdline
    if not args or not args[0].endswith(POSTMASTER) or "-D" not in args[:-1]:
        return None
    return args[args.index("-D") + 1]


def member_of(datadir: str) -> str:
    """The member a data directory belongs to: the harness keeps it in `<cluster>/<member>/data`."""
    return PurePosixPath(datadir).parent.name


def kinds(snapshot: Mapping[int, Proc], me: int, session: int) -> dict[int, str]:
    """What each process is charged as. The session backend's postmaster names the system measured: backends
    of postmasters in the same cluster directory are "backends of <member>"; another cluster's (the other side
    of the comparison, idle meanwhile) fall under OTHER with everything unnamed."""
    postmasters = {pid: d for pid, p in snapshot.items() if (d := data_dir(p))}
    own = snapshot.get(session)
    root = PurePosixPath(postmasters[own.ppid]).parent.parent if own and own.ppid in postmasters else None
    out = {}
    for pid, p in snapshot.items():
        if pid == me:
            out[pid] = CLIENT
        elif pid == session:
            out[pid] = SESSION
        elif p.ppid in postmasters and PurePosixPath(postmasters[p.ppid]).parent.parent == root:
            out[pid] = f"backends of {member_of(postmasters[p.ppid])}"
        elif p.comm == "pgbouncer":
            out[pid] = POOLER
        elif p.comm == "haproxy":
            out[pid] = BALANCER
        else:
            out[pid] = OTHER
    return out


def charge(before: Mapping[int, Proc], after: Mapping[int, Proc], me: int, session: int,
           queries: int) -> dict[str, float]:
    """CPU milliseconds per query by kind, from two snapshots around `queries` runs (a process that started in
    between counts from zero; one that ended is lost, which is why the step holds one connection)."""
    by_kind: dict[str, float] = {}
    for pid, kind in kinds(after, me, session).items():
        used = after[pid].cpu_s - (before[pid].cpu_s if pid in before else 0.0)
        if used > 0:
            by_kind[kind] = by_kind.get(kind, 0.0) + used * 1000 / queries
    return by_kind


def net_of(active: Mapping[str, float], background: Mapping[str, float], wall_ms: float) -> dict[str, float]:
    """What the queries cost by kind: the active window's CPU per query less what each kind burns anyway in as
    much wall time (HAProxy's health checks, Patroni's loop, checkpoints), measured idle just before; never
    below zero."""
    return {k: max(v - background.get(k, 0.0) * wall_ms / 1000, 0.0) for k, v in active.items()}


def server_ms(split: Mapping[str, float]) -> float:
    """What the database side spends per query: everything but the client and the unnamed rest."""
    return sum(v for k, v in split.items() if k not in (CLIENT, OTHER))


def medians(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median per kind over the rounds (a kind missing in a round counts 0 there)."""
    names = sorted({k for r in rounds for k in r})
    return {k: round(statistics.median(r.get(k, 0.0) for r in rounds), 1) for k in names}


def summary(sides: Mapping[str, Mapping[str, Any]], cluster: str, single: str, clients: int) -> dict[str, float]:
    """The ratios the issue's shared-box targets depend on. On one box every side's processes share the same
    cores, so many clients can get at most (single node's CPU per query) / (cluster's) of the single node's
    throughput, client included as the benchmark's client runs there too; beside it, what they got: the median
    over the rounds of each round's cluster / single node queries per second."""
    c, s = sides[cluster]["cpu_ms"], sides[single]["cpu_ms"]
    c_all, s_all = server_ms(c) + c.get(CLIENT, 0.0), server_ms(s) + s.get(CLIENT, 0.0)
    got = [mine / theirs for mine, theirs in zip(sides[cluster]["tps_by_round"], sides[single]["tps_by_round"],
                                                 strict=True) if theirs > 0]
    return {"server CPU per query, cluster / single node": round(server_ms(c) / server_ms(s), 2),
            "CPU per query with the client, cluster / single node": round(c_all / s_all, 2),
            "shared-box throughput ceiling, cluster / single node (its inverse)": round(s_all / c_all, 2),
            f"{clients}-client throughput, cluster / single node (median of the rounds' ratios)":
                round(statistics.median(got), 2) if got else 0.0}


# ---- I/O --------------------------------------------------------------------------------------------------
def snapshot() -> dict[int, Proc]:
    """Every process's parent, name, arguments and CPU seconds (user + system), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
        except OSError:  # gone meanwhile
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = Proc(int(fields[1]), comm, args, (int(fields[11]) + int(fields[12])) / tick)
    return out


def measure(dsn: str, table: str, query: Query, params: dict[str, Any], queries: int, warmup: int,
            idle_s: float = 2.0) -> tuple[dict[str, float], float]:
    """CPU ms per query by kind, net of the background (`idle_s` of the same connection idle just before), and
    wall ms per query, over `queries` runs on one connection. The client takes the rows as the throughput
    clients do (steps.run_clients: libpq receives them all, Python converts none)."""
    sql = query.sql.format(table=table)  # as steps.time_query and steps.run_clients render it
    me = os.getpid()
    with steps.connect(dsn) as conn:
        session = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for _ in range(warmup):  # also opens the coordinator's cached connections to the workers
            conn.execute(sql, params)
        quiet, started = snapshot(), time.perf_counter()
        time.sleep(idle_s)
        before, idle = snapshot(), time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(queries):
            conn.execute(sql, params)
        wall, after = time.perf_counter() - started, snapshot()
    background = {k: v / idle for k, v in charge(quiet, before, me, session, 1).items()}  # ms per second
    wall_ms = wall * 1000 / queries
    return net_of(charge(before, after, me, session, queries), background, wall_ms), wall_ms


def run(systems: Mapping[str, tuple[str, str, Query]], params: dict[str, Any], rounds: int = 3,
        queries: int = 20, warmup: int = 3, clients: int = 16, duration: float = 8.0) -> dict[str, Any]:
    """`systems`: label -> (dsn, table, query); each round measures every system in turn (CPU split on one
    connection, then `clients` clients for `duration` seconds), medians reported."""
    splits: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    walls: dict[str, list[float]] = {name: [] for name in systems}
    tps: dict[str, list[float]] = {name: [] for name in systems}
    with progress("cpu", total=rounds * len(systems)) as bar:
        for _ in range(rounds):
            for name, (dsn, table, query) in systems.items():
                split, wall = measure(dsn, table, query, params, queries, warmup)
                splits[name].append(split)
                walls[name].append(wall)
                tps[name].append(steps.run_clients(dsn, table, params, [query], clients, duration)["tps"])
                bar.advance(1)
    return {"query": next(iter(systems.values()))[2].what, "rounds": rounds, "queries": queries,
            "clients": clients, "duration_s": duration,
            "sides": {name: {"cpu_ms": medians(splits[name]), "wall_ms": round(statistics.median(walls[name]), 1),
                             "server_ms_by_round": [round(server_ms(s), 1) for s in splits[name]],
                             "tps_by_round": tps[name]}
                      for name in systems}}
