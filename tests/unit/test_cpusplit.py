"""The cpu step's pure parts (benchmarks/cpusplit.py): which process is charged as what, CPU per query net of
the background, medians and the ratios; the report section; and the snapshot reader on this machine's /proc."""

from __future__ import annotations

import os

from benchmarks import cpusplit, report
from benchmarks.cpusplit import BALANCER, CLIENT, OTHER, POOLER, SESSION, Proc

PG = "/usr/lib/postgresql/15/bin/postgres"


def postmaster(cluster: str, member: str, cpu: float = 0.0) -> Proc:
    return Proc(1, "postgres", (PG, "-D", f"{cluster}/{member}/data", "--port=5432"), cpu)


def backend(postmaster_pid: int, cpu: float) -> Proc:
    return Proc(postmaster_pid, "postgres", ("postgres: h: postgres citus 127.0.0.1(4242) idle",), cpu)


def box(session_cpu: float = 0.0, shard_cpu: float = 0.0, other_side_cpu: float = 0.0, client_cpu: float = 0.0,
        pooler_cpu: float = 0.0, patroni_cpu: float = 0.0) -> dict[int, Proc]:
    """Two clusters on one box: /c/run (coordinator 10 with the session 11, worker 20 with a shard backend 21)
    and /c/single (postmaster 30 with a backend 31), plus the client, PgBouncer, HAProxy and Patroni."""
    return {
        10: postmaster("/c/run", "h-coordinator-0"), 11: backend(10, session_cpu),
        20: postmaster("/c/run", "h-worker1-0"), 21: backend(20, shard_cpu),
        30: postmaster("/c/single", "h-coordinator-0"), 31: backend(30, other_side_cpu),
        40: Proc(1, "python", ("python", "-m", "benchmarks"), client_cpu),
        50: Proc(1, "pgbouncer", ("/usr/sbin/pgbouncer", "x.ini"), pooler_cpu),
        60: Proc(1, "haproxy", ("/usr/sbin/haproxy", "-W"), 0.0),
        70: Proc(1, "patroni", ("/usr/bin/python3", "patroni"), patroni_cpu),
    }


def test_data_dir_and_member_come_from_the_postmasters_arguments() -> None:
    assert cpusplit.data_dir(postmaster("/c/run", "h-worker1-0")) == "/c/run/h-worker1-0/data"
    assert cpusplit.member_of("/c/run/h-worker1-0/data") == "h-worker1-0"
    assert cpusplit.data_dir(backend(10, 0)) is None
    assert cpusplit.data_dir(Proc(1, "postgres", (PG, "-D"), 0)) is None  # no value after -D


def test_kinds_name_the_measured_clusters_backends_and_leave_the_other_cluster_in_other() -> None:
    k = cpusplit.kinds(box(), me=40, session=11)
    assert k[11] == SESSION and k[21] == "backends of h-worker1-0" and k[40] == CLIENT
    assert k[50] == POOLER and k[60] == BALANCER and k[70] == OTHER
    assert k[31] == OTHER  # the single node's backend while the cluster is measured
    k = cpusplit.kinds(box(), me=40, session=31)
    assert k[31] == SESSION and k[11] == OTHER and k[21] == OTHER


def test_charge_is_cpu_ms_per_query_by_kind_and_counts_new_processes_from_zero() -> None:
    before = box(session_cpu=1.0, shard_cpu=2.0, client_cpu=5.0, pooler_cpu=0.5)
    after = box(session_cpu=1.4, shard_cpu=2.6, client_cpu=5.3, pooler_cpu=0.6)
    after[22] = backend(20, 0.2)  # a shard connection opened meanwhile
    split = cpusplit.charge(before, after, me=40, session=11, queries=10)
    assert {k: round(v, 6) for k, v in split.items()} == {
        SESSION: 40.0, "backends of h-worker1-0": 80.0, CLIENT: 30.0, POOLER: 10.0}


def test_net_of_subtracts_the_background_rate_for_the_same_wall_time_and_never_goes_negative() -> None:
    net = cpusplit.net_of({BALANCER: 9.0, SESSION: 40.0, OTHER: 1.0}, {BALANCER: 50.0, OTHER: 20.0}, wall_ms=100)
    assert net == {BALANCER: 4.0, SESSION: 40.0, OTHER: 0.0}


def test_medians_summary_and_the_throughput_ceiling() -> None:
    assert cpusplit.medians([{SESSION: 10.0}, {SESSION: 30.0, POOLER: 3.0}, {SESSION: 20.0}]) == {
        POOLER: 0.0, SESSION: 20.0}
    sides = {"cluster": {"cpu_ms": {SESSION: 40.0, "backends of w": 60.0, POOLER: 10.0, CLIENT: 30.0, OTHER: 5.0},
                         "tps_by_round": [6.0, 9.0, 7.0]},
             "single": {"cpu_ms": {SESSION: 55.0, CLIENT: 30.0, OTHER: 2.0}, "tps_by_round": [10.0, 10.0, 14.0]}}
    assert cpusplit.server_ms(sides["cluster"]["cpu_ms"]) == 110.0
    assert cpusplit.summary(sides, "cluster", "single", 16) == {
        "server CPU per query, cluster / single node": 2.0,
        "CPU per query with the client, cluster / single node": 1.65,
        "shared-box throughput ceiling, cluster / single node (its inverse)": 0.61,
        # round by round: 0.6, 0.9, 0.5 -> median 0.6 (not 7.0 / 10.0 of the medians)
        "16-client throughput, cluster / single node (median of the rounds' ratios)": 0.6}


def test_report_section_lists_every_kind_per_side_and_the_ratios() -> None:
    cpu = {"query": "q", "rounds": 3, "queries": 20, "clients": 16, "ratios": {"r": 1.5},
           "sides": {"cluster": {"cpu_ms": {SESSION: 40.0, POOLER: 10.0}, "wall_ms": 90.0,
                                 "server_ms_by_round": [50.0, 48.0, 52.0], "tps_by_round": [7.0, 8.0, 9.0]},
                     "single": {"cpu_ms": {SESSION: 30.0}, "wall_ms": 80.0, "server_ms_by_round": [30.0],
                                "tps_by_round": [10.0]}}}
    (title, header, rows), (_, _, ratios) = report.cpu_sections(cpu)
    assert "median of 3 rounds of 20" in title and header == ["process", "cluster", "single"]
    assert [POOLER, 10.0, ""] in rows and [SESSION, 40.0, 30.0] in rows
    assert ["database side ms, each round", "50.0 / 48.0 / 52.0", "30.0"] in rows
    assert ["q/s at 16 clients, each round", "7.0 / 8.0 / 9.0", "10.0"] in rows
    assert ratios == [["r", 1.5]]


def test_snapshot_reads_this_process_with_its_parent_and_growing_cpu() -> None:
    first = cpusplit.snapshot()[os.getpid()]
    sum(i * i for i in range(2_000_000))  # burn a little CPU
    second = cpusplit.snapshot()[os.getpid()]
    assert first.ppid == os.getppid() and first.cmdline and second.cpu_s >= first.cpu_s
