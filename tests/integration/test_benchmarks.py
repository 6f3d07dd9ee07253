"""A quick end-to-end benchmark run on the harness: every report file, every query and client count asked for."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from benchmarks import steps
from benchmarks.__main__ import main
from benchmarks.workload import COMPARE_NAMES, DATA_TABLE, QUERY_NAMES, Dataset
from cluster.local.harness import Harness
from cluster.provision import provision, read_migrations
from tests.integration.conftest import SQL_DIR

pytestmark = [pytest.mark.slow, pytest.mark.citus]


def test_quick_run_writes_every_report_with_every_query_and_client_count(harness: Harness, tmp_path: Path) -> None:
    provision(harness.target, read_migrations(SQL_DIR))
    out = tmp_path / "run"
    with psycopg.connect(harness.dsn(database="postgres"), autocommit=True) as admin:  # a plain database as baseline
        admin.execute("DROP DATABASE IF EXISTS baseline")
        admin.execute("CREATE DATABASE baseline")
    argv = ["run", "--harness", str(harness.base_dir), "--baseline-dsn", harness.dsn(database="baseline"),
            "--rows", "5000", "--repeat", "2", "--warmup", "1",
            "--clients", "1,2,4", "--duration", "0.5", "--concurrency-queries", "radius_5km,bbox",
            "--compare-concurrency", "radius_5km,knn_10", "--out", str(out)]
    assert main(argv) == 0
    for name in ("results.json", "report.md", "report.html", "latency.png", "throughput.png", "distribution.png",
                 "compare.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["load"]["rows"] == 5000
    assert harness.passwords.superuser not in (out / "results.json").read_text()
    assert set(results["queries"]) == set(QUERY_NAMES)
    assert all(isinstance(q["index_used"], bool) for q in results["queries"].values())
    # On tiny shards the planner may prefer scans; the radius query's geography index wins even here.
    assert results["queries"]["radius_5km"]["index_used"], results["queries"]["radius_5km"]["explain"]
    assert set(results["concurrency"]) == {"radius_5km", "bbox", "mix"}
    assert all(set(by) == {"1", "2", "4"} for by in results["concurrency"].values())
    assert sum(w["rows"] for w in results["distribution"]["workers"]) == 5000
    compare = results["compare"]
    assert set(compare["datasets"]) == {"uniform", "skewed"}
    for entry in compare["datasets"].values():
        assert set(entry["latency"]) == {"spatial (functions)", "spatial (plain, fan-out)", "by vehicle",
                                         "seed schema", "single node"}
        assert all(set(by_query) == set(COMPARE_NAMES) for by_query in entry["latency"].values())
        # Same rows whichever way they are asked for (the single node holds the same data set).
        for name in ("radius_5km", "bbox", "knn_10"):
            assert len({entry["latency"][s][name]["rows"] for s in entry["latency"]}) == 1, name
        assert entry["latency"]["spatial (functions)"]["radius_500m"]["tasks"] < harness.config.citus.shard_count
        assert set(entry["concurrency"]["spatial (functions)"]) == {"radius_5km", "knn_10"}
    # 4 per data set (the 16-client ratio needs a run with 16 clients), and the load ratio
    assert len(compare["ratios"]) == 9
    assert "Compare (skewed data): shard balance" in (out / "report.md").read_text()
    per_node = results["workers"]["radius_5km"]
    assert {"coordinator", "worker1 (any node)", "worker1 (own shards)", "worker2 (own shards)"} <= set(per_node)
    assert results["overhead"]["pgbench_tps"] > 0 and results["overhead"]["runner_tps"] > 0


def test_cpu_step_charges_the_clusters_query_to_its_shard_backends_and_the_single_nodes_to_one(
        harness: Harness, tmp_path: Path) -> None:
    provision(harness.target, read_migrations(SQL_DIR))
    with psycopg.connect(harness.dsn(database="postgres"), autocommit=True) as admin:  # a plain database as baseline
        admin.execute("DROP DATABASE IF EXISTS baseline")
        admin.execute("CREATE DATABASE baseline")
    data = Dataset(20_000, seed=5)
    steps.prepare_single_node(harness.dsn(database="baseline"), data, parallel=2)
    out = tmp_path / "cpu"
    argv = ["run", "--harness", str(harness.base_dir), "--baseline-dsn", harness.dsn(database="baseline"),
            "--steps", "load,cpu", "--rows", "20000", "--seed", "5", "--repeat", "40", "--warmup", "1",
            "--cpu-rounds", "1", "--clients", "2", "--duration", "1", "--out", str(out)]
    assert main(argv) == 0
    cpu = json.loads((out / "results.json").read_text())["cpu"]
    cluster, single = cpu["sides"]["cluster: pruned plain query"], cpu["sides"]["single node"]
    shards = sum(v for k, v in cluster["cpu_ms"].items() if k.startswith("backends of h-worker"))
    assert shards > 0, cluster  # the coordinator's tasks ran in the workers' backends
    assert cluster["cpu_ms"]["session backend"] > 0 and single["cpu_ms"]["session backend"] > 0
    assert cluster["wall_ms"] > 0 and len(single["server_ms_by_round"]) == 1
    assert cluster["tps_by_round"][0] > 0 and single["tps_by_round"][0] > 0 and cpu["clients"] == 2
    assert set(cpu["ratios"]) == {"server CPU per query, cluster / single node",
                                  "CPU per query with the client, cluster / single node",
                                  "shared-box throughput ceiling, cluster / single node (its inverse)",
                                  "2-client throughput, cluster / single node (median of the rounds' ratios)"}
    assert "## CPU per query: what it implies" in (out / "report.md").read_text()


def test_ha_command_reports_a_drill_with_its_timeline(harness: Harness, tmp_path: Path) -> None:
    out = tmp_path / "ha"
    argv = ["ha", "--harness", str(harness.base_dir), "--scenario", "haproxy-restart", "--repeat", "1", "--out",
            str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    drill = results["ha"]["drills"][0]
    assert drill["scenario"] == "haproxy-restart" and drill["lost"] == 0
    assert (out / "ha-timeline.png").stat().st_size > 0
    assert "haproxy-restart" in (out / "report.md").read_text()


def test_load_through_a_worker_leader_fills_spatial_key_there_in_batches(harness: Harness) -> None:
    """The scale benchmark's --load-via any-node: COPY streams to a worker leader (Citus routes from any node),
    the grid read there (Grid.read on a worker), every row on the shard of its point, several batches each."""
    provision(harness.target, read_migrations(SQL_DIR))
    worker = harness.member_dsn(harness.leader(1))
    data = Dataset(3000, seed=7)
    result = steps.load(harness.dsn(), data, parallel=2, copy_dsn=worker, batch_rows=1000, via="worker1")
    assert result["rows"] == 3000 and result["batches"] == 4 and result["retries"] == []
    with steps.connect(worker) as conn:
        port = conn.execute("SELECT current_setting('port')").fetchone()[0]
    assert result["stream_nodes"] == [[port], [port]]
    with steps.connect(harness.dsn()) as conn:
        wrong = conn.execute(f"SELECT count(*) FROM {DATA_TABLE} WHERE spatial_key <> "
                             "vehicle_spatial_key(ST_X(location), ST_Y(location))").fetchone()[0]
    assert wrong == 0


def test_a_batch_whose_shard_connection_dies_is_sent_again_and_no_row_is_doubled(harness: Harness) -> None:
    """A worker backend that receives the coordinator's COPY is terminated mid-load (a stand-in for the TLS
    write failure of benchmarks/results/scale-out/notes.md): the coordinator's COPY fails, the batch rolls back
    whole and is sent again on a new connection, and the count check passes."""
    provision(harness.target, read_migrations(SQL_DIR))
    worker = harness.member_dsn(harness.leader(1))
    killed: list[int] = []
    done = threading.Event()

    def kill_one_copy() -> None:
        with steps.connect(worker) as conn:
            while not done.is_set() and not killed:
                pids = [p for (p,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'COPY %%' AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'").fetchall()]
                if pids:
                    conn.execute("SELECT pg_terminate_backend(%s::int)", (pids[0],))
                    killed.append(pids[0])
                time.sleep(0.05)

    killer = threading.Thread(target=kill_one_copy)
    killer.start()
    try:
        result = steps.load(harness.dsn(), Dataset(60_000, seed=3), parallel=2, batch_rows=10_000)
    finally:
        done.set()
        killer.join()
    assert killed, "no COPY seen on worker1"
    assert result["rows"] == 60_000  # load() checked the count: the failed batch was not doubled
    assert result["retries"] and all(r["attempt"] == 1 for r in result["retries"]), result["retries"]
