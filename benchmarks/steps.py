"""The benchmark steps. Each takes DSNs and options and returns a plain, JSON-able dict for the report.

load          the dataset by COPY, one connection per chunk in parallel (Citus routes each row to its shard)
queries       single-query latency (warm-up, then repetitions) with EXPLAIN evidence of the index and tasks
concurrency   throughput and latency at several client counts, per query and for a mix (psycopg pool)
distribution  rows and bytes per shard and per worker, skew, shard count, colocation
workers       the same queries through the coordinator, through each worker leader, and on each worker's shards
overhead      one query at 16 clients through pgbench and through this runner: is the runner the bottleneck?
compare       the same queries on the seed's schema, the project's schema and (optionally) a single node
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from benchmarks.errors import BenchmarkError
from benchmarks.progress import progress
from benchmarks.stats import LatencySummary, coefficient_of_variation, percentile, skew, throughput
from benchmarks.workload import (
    BY_VEHICLE_TABLE,
    COLUMNS,
    DATA_COLUMNS,
    DATA_TABLE,
    QUERIES,
    SEED_INSERT,
    SEED_SCHEMA,
    SEED_TABLE,
    SINGLE_NODE_SCHEMA,
    TABLE,
    Dataset,
    Grid,
    Query,
)


def connect(dsn: str) -> psycopg.Connection:
    """prepare_threshold=None: psycopg would prepare a statement server-side after its 5th run, which PgBouncer
    1.18's transaction pooling (the read-write port, for application roles) cannot carry between transactions:
    the next transaction may run on another server connection, where the statement does not exist."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10, prepare_threshold=None)


# ---- load -----------------------------------------------------------------------------------------------
# Each stream COPYs its rows in batches of COPY_BATCH_ROWS, one autocommit COPY statement (through Citus: one
# distributed transaction) per batch. 250k: the 1M-row runs stay one COPY per stream (comparable with the
# numbers measured before batching), 5M rows make 5 per stream; a batch costs ~45 s of one stream at the
# scale benchmark's rates while starting a COPY (the coordinator's connections to the shards) costs well under
# a second, and a failure re-sends at most 250k rows (~25 MB of text, held in memory to be sent again).
COPY_BATCH_ROWS = 250_000
COPY_ATTEMPTS = 4  # per batch: the first try and 3 retries, each on a new connection
COPY_RETRY_PAUSE = 2.0  # seconds before retry n is n × this (the worker's backlog drains meanwhile)
WRITE_ROWS = 10_000  # rows per copy.write() (and per progress step)
# Citus's coordinator->worker COPY failing in the transport (multi_copy.c SendCopyDataToPlacement: SQLSTATE
# 58030 io_error; XX000 accepted too): libpq over TLS in non-blocking mode can lose its output buffer ("SSL
# error: bad length" on the worker), see benchmarks/results/scale-out/notes.md. The same lost worker connection
# surfaces as "failure on connection marked as essential: host:port" (remote_transaction.c, XX000) when Citus
# notices it outside the data path (ending the COPY, preparing the commit), and as the worker's own words for a
# dropped session, which Citus relays under XX000 ("terminating connection due to administrator command" in
# make test, when a worker's COPY backend was terminated; libpq's texts for a dead socket).
CITUS_COPY_TRANSPORT = re.compile(
    r"failed to COPY to shard|failed to send \d+ bytes|failure on connection marked as essential"
    r"|terminating connection due to administrator command|server closed the connection unexpectedly"
    r"|connection not open|SSL SYSCALL error|SSL error", re.IGNORECASE)
# The server went away under the statement (shutdown, crash, not accepting connections yet): not the data.
GONE = ("57P01", "57P02", "57P03")


def is_transport_failure(exc: BaseException) -> bool:
    """Whether a failed COPY batch may be sent again on a new connection: the transport failed, not the data.

    Yes: a connection error without SQLSTATE (libpq: connection lost, SSL error), SQLSTATE class 08
    (connection exception), the server shutting down or restarting (57P01-57P03), and Citus's "failed to COPY
    to shard" and the other texts of a lost worker connection it relays (CITUS_COPY_TRANSPORT; 58030 or XX000).
    No: everything else, data errors above all (class 22, 23), and resource errors (53: disk full, out of
    memory) that a retry would only repeat."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    if state.startswith("08") or state in GONE:
        return True
    return state in ("58030", "XX000") and CITUS_COPY_TRANSPORT.search(str(exc)) is not None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def copy_stream(open_conn: Callable[[], Any], sql: str, lines: Iterator[str], advance: Callable[[int], None],
                batch_rows: int = COPY_BATCH_ROWS, attempts: int = COPY_ATTEMPTS, name: str = "stream",
                pause: float = COPY_RETRY_PAUSE, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """COPY `lines` with `sql` in batches of `batch_rows`, one COPY statement each (autocommit: a batch commits
    whole or not at all). A batch that fails in the transport (is_transport_failure) is sent again on a new
    connection, up to `attempts` tries; then BenchmarkError names the batch and the last error. Any other error
    propagates at once. Returns the batches sent, the retries (batch, attempt, error) and the node (server
    port) of each connection used."""
    conn: Any = None
    retries: list[dict[str, Any]] = []
    nodes: list[str] = []
    batches = 0
    source = iter(lines)
    try:
        while kept := list(islice(source, min(WRITE_ROWS, batch_rows))):
            # `kept`: the batch's lines generated so far. The first try sends them as they are generated (the
            # client's work overlaps the server's); a retry sends them again, then generates the rest.
            batches += 1
            for attempt in range(1, attempts + 1):
                sent = 0
                try:
                    if conn is None:
                        conn = open_conn()
                        nodes.append(_server_of(conn))
                    with conn.cursor() as cur, cur.copy(sql) as copy:
                        for part in _batch_parts(kept, source, batch_rows):
                            copy.write("".join(part))
                            advance(len(part))
                            sent += len(part)
                    break
                except psycopg.Error as exc:
                    advance(-sent)  # rolled back: the progress line counts them again when they are re-sent
                    if not is_transport_failure(exc):
                        raise
                    _close(conn)
                    conn = None
                    first = (batches - 1) * batch_rows
                    retries.append({"batch": batches, "first_row": first, "attempt": attempt,
                                    "error": first_line(exc)})
                    if attempt == attempts:
                        raise BenchmarkError(
                            f"load: {name} batch {batches} (the stream's rows {first:,} to {first + batch_rows - 1:,}"
                            f" at most) failed {attempts} times in the transport, each rolled back; last error: "
                            f"{first_line(exc)}") from exc
                    sleep(pause * attempt)
    finally:
        _close(conn)
    return {"batches": batches, "retries": retries, "nodes": nodes}


def _batch_parts(kept: list[str], source: Iterator[str], batch_rows: int) -> Iterator[list[str]]:
    """The batch in parts of WRITE_ROWS: first what `kept` holds, then new lines from `source` (appended to
    `kept`, so a retry has them) until the batch has `batch_rows` or the source ends."""
    known = len(kept)
    for start in range(0, known, WRITE_ROWS):
        yield kept[start:start + WRITE_ROWS]
    while len(kept) < batch_rows:
        part = list(islice(source, min(WRITE_ROWS, batch_rows - len(kept))))
        if not part:
            return
        kept.extend(part)
        yield part


def _server_of(conn: Any) -> str:
    """Which server a connection reached (its port: one per member here), for the load's record."""
    try:
        return str(conn.execute("SELECT current_setting('port')").fetchone()[0])
    except (psycopg.Error, AttributeError, TypeError):
        return "?"


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def load(dsn: str, data: Dataset, table: str = DATA_TABLE, parallel: int = 4, copy_dsn: str | None = None,
         batch_rows: int = COPY_BATCH_ROWS, via: str = "read-write") -> dict[str, Any]:
    """Empty `table` and COPY the dataset into it over `parallel` streams, in batches of `batch_rows` rows
    (copy_stream: a batch that fails in the transport is sent again on a new connection). The streams go to
    `copy_dsn` (default `dsn`): the any-node endpoint spreads them over the group leaders, each of which routes
    its rows to the shards itself. spatial_key is filled here (from the grid as read over `copy_dsn`) when the
    table has one, so every row goes straight to its shard. TRUNCATE, VACUUM and the count go through `dsn`."""
    copy_dsn = copy_dsn or dsn
    with connect(dsn) as conn:
        conn.execute(f"TRUNCATE {table}")
        has_key = conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'spatial_key'",
                               (table,)).fetchone() is not None
    grid = None
    if has_key:
        with connect(copy_dsn) as conn:
            grid = Grid.read(conn)
    sizes = data.chunk_sizes(parallel)
    columns = DATA_COLUMNS if grid else COLUMNS
    sql = f"COPY {table} ({columns}) FROM STDIN"
    with progress(f"load {table} via {via}", total=data.rows) as bar:
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            streams = list(pool.map(
                lambda i: copy_stream(lambda: connect(copy_dsn), sql, data.copy_lines(i, sizes[i], grid),
                                      bar.advance, batch_rows, name=f"stream {i}"),
                range(parallel)))
        elapsed = time.perf_counter() - started
    with connect(dsn) as conn:
        # Settle before timing: fresh statistics and visibility map, no autovacuum running under the queries.
        conn.execute(f"VACUUM (ANALYZE) {table}")
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    # Proves no retry doubled a batch (a COPY that committed although its client saw the connection fail).
    if count != data.rows:
        raise BenchmarkError(f"load: {table} holds {count} rows after loading {data.rows}")
    retries = [{"stream": i, **r} for i, s in enumerate(streams) for r in s["retries"]]
    return {"table": table, "rows": count, "seconds": round(elapsed, 3), "rows_per_s": round(count / elapsed),
            "method": f"COPY over {parallel} connections via {via}, batches of {batch_rows:,} rows",
            "via": via, "streams": parallel, "batch_rows": batch_rows,
            "batches": sum(s["batches"] for s in streams), "retries": retries,
            "stream_nodes": [s["nodes"] for s in streams], "dataset": data.name}


def spatial_order(dsn: str) -> dict[str, Any]:
    """What the README says to run after a bulk load: sql/0005's vehicle_locations_order_by_location() (each
    shard rewritten in spatial index order). Skipped, with the reason, on a schema without it."""
    with connect(dsn) as conn:
        if conn.execute("SELECT to_regproc('vehicle_locations_order_by_location')").fetchone()[0] is None:
            return {"skipped": "vehicle_locations_order_by_location() missing: provision again (sql/0005)"}
        started = time.perf_counter()
        shards = conn.execute("SELECT vehicle_locations_order_by_location()").fetchone()[0]
        return {"shards": shards, "seconds": round(time.perf_counter() - started, 3)}


def seed_insert(dsn: str, rows: int, table: str = TABLE) -> dict[str, Any]:
    """The seed's way in (INSERT ... SELECT generate_series on the server), timed for comparison."""
    with connect(dsn) as conn:
        conn.execute(f"TRUNCATE {table}")
        started = time.perf_counter()
        conn.execute(SEED_INSERT.format(table=table), {"rows": rows})
        elapsed = time.perf_counter() - started
    return {"table": table, "rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed),
            "method": "the seed's INSERT ... SELECT generate_series"}


# ---- single queries ---------------------------------------------------------------------------------------
def time_query(dsn: str, query: Query, table: str, params: dict[str, Any], warmup: int, repeat: int) -> dict:
    sql = query.sql.format(table=table)
    with connect(dsn) as conn:
        for _ in range(warmup):
            conn.execute(sql, params)
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            rows = conn.execute(sql, params).rowcount  # every row received, none converted (as psql, pgbench)
            seconds.append(time.perf_counter() - started)
        evidence = explain(conn, query.evidence or sql, params)
    return {"summary": LatencySummary.of_seconds(seconds).as_dict(), "rows": rows, "explain": evidence,
            "intended_index": query.index,
            "index_used": query.index is None or any(query.index in i for i in evidence["indexes"])}


def explain(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Which indexes the plan uses (on the shards, for Citus) and how many tasks/shards it touches."""
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found: dict[str, list] = {"Index Name": [], "Task Count": []}
    _walk(plan, found)
    tasks = found["Task Count"]
    return {"indexes": sorted(set(found["Index Name"])), "tasks": sum(tasks) if tasks else None}


def _walk(node: Any, found: dict[str, list]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in found:
                found[key].append(value)
            _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)


def queries(dsn: str, table: str, params: dict[str, Any], warmup: int = 2, repeat: int = 10,
            names: Sequence[str] | None = None) -> dict[str, Any]:
    chosen = [q for q in QUERIES if names is None or q.name in names]
    results = {}
    with progress(f"queries on {table}", total=len(chosen)) as bar:
        for query in chosen:
            results[query.name] = time_query(dsn, query, table, params, warmup, repeat)
            bar.advance(1)
    return results


# ---- concurrency ------------------------------------------------------------------------------------------
def concurrency(dsn: str, table: str, params: dict[str, Any], clients: Sequence[int], duration: float,
                names: Sequence[str]) -> dict[str, Any]:
    """Throughput and latency at each client count, for each named query and for their mix."""
    workloads: dict[str, list[Query]] = {n: [q for q in QUERIES if q.name == n] for n in names}
    workloads["mix"] = [q for q in QUERIES if q.name in names]
    results: dict[str, Any] = {}
    with progress("concurrency", total=len(workloads) * len(clients)) as bar:
        for label, mix in workloads.items():
            results[label] = {}
            for n in clients:
                results[label][str(n)] = run_clients(dsn, table, params, mix, n, duration)
                bar.advance(1)
    return results


def run_clients(dsn: str, table: str, params: dict[str, Any], mix: list[Query], clients: int,
                 duration: float) -> dict[str, Any]:
    sqls = [q.sql.format(table=table) for q in mix]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    with ConnectionPool(dsn, min_size=clients, max_size=clients, kwargs={"autocommit": True}, open=True) as pool:
        pool.wait(timeout=60)
        stop_at = time.perf_counter() + duration

        def client(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop_at:
                sql = sqls[i % len(sqls)]
                i += 1
                started = time.perf_counter()
                try:
                    with pool.connection() as conn:
                        conn.execute(sql, params)
                    with lock:
                        latencies.append(time.perf_counter() - started)
                except psycopg.Error:
                    with lock:
                        errors[0] += 1

        began = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    if not latencies:
        return {"tps": 0.0, "errors": errors[0], "count": 0}
    summary = LatencySummary.of_seconds(latencies)
    return {"tps": round(throughput(len(latencies), elapsed), 2), "errors": errors[0], "count": len(latencies),
            "p50": summary.p50, "p95": summary.p95, "p99": summary.p99}


# ---- distribution -----------------------------------------------------------------------------------------
def distribution(dsn: str, table: str = DATA_TABLE) -> dict[str, Any]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT s.shardid, n.nodename || ':' || n.nodeport, r.result::bigint, b.result::bigint "
            "FROM run_command_on_shards(%(t)s, 'SELECT count(*) FROM %%s') r "
            "JOIN run_command_on_shards(%(t)s, 'SELECT pg_total_relation_size(''%%s'')') b "
            "USING (shardid) JOIN pg_dist_shard s USING (shardid) JOIN pg_dist_placement p USING (shardid) "
            "JOIN pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' ORDER BY 1",
            {"t": table},
        ).fetchall()
        colocation = conn.execute(
            "SELECT table_name::text, colocation_id, distribution_column FROM citus_tables ORDER BY 2, 1"
        ).fetchall()
    shards = [{"shard": int(s), "node": node, "rows": int(r), "bytes": int(b)} for s, node, r, b in rows]
    workers: dict[str, dict[str, int]] = {}
    for shard in shards:
        w = workers.setdefault(shard["node"], {"rows": 0, "bytes": 0, "shards": 0})
        w["rows"] += shard["rows"]
        w["bytes"] += shard["bytes"]
        w["shards"] += 1
    shard_rows = [s["rows"] for s in shards]
    return {
        "table": table,
        "shard_count": len(shards),
        "shards": shards,
        "workers": [{"node": node, **values} for node, values in sorted(workers.items())],
        "skew": {
            "shard_rows_max_over_mean": round(skew(shard_rows), 3),
            "shard_rows_cv": round(coefficient_of_variation(shard_rows), 3),
            "worker_rows_max_over_mean": round(skew([w["rows"] for w in workers.values()]), 3),
            "empty_shards": sum(1 for r in shard_rows if r == 0),
        },
        "colocation": [{"table": t, "colocation_id": c, "distribution_column": d} for t, c, d in colocation],
    }


# ---- compare ---------------------------------------------------------------------------------------------
def prepare_seed_schema(dsn: str) -> dict[str, Any]:
    """The seed's table next to the project's, filled with the very same rows (INSERT ... SELECT)."""
    with connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SEED_TABLE}")
        for statement in SEED_SCHEMA:
            conn.execute(statement)
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {SEED_TABLE} ({COLUMNS}) SELECT {COLUMNS} FROM {TABLE}")
        conn.execute(f"VACUUM (ANALYZE) {SEED_TABLE}")
        return {"rows_copied_seconds": round(time.perf_counter() - started, 3)}


def prepare_single_node(dsn: str, data: Dataset, parallel: int) -> dict[str, Any]:
    """A plain PostGIS database with the best indexes and the same rows; also times the seed's INSERT there."""
    with connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        for statement in SINGLE_NODE_SCHEMA:
            conn.execute(statement)
    insert = seed_insert(dsn, data.rows)
    copied = load(dsn, data, table=TABLE, parallel=parallel)
    return {"seed_insert": insert, "copy": copied}


def prepare_by_vehicle(dsn: str) -> dict[str, Any]:
    """The by-vehicle strategy beside the spatial one: the data table's columns and indexes (read from the
    cluster, so they stay the same), distributed by vehicle_id, filled with the same rows."""
    with connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {BY_VEHICLE_TABLE}")
        conn.execute(f"CREATE TABLE {BY_VEHICLE_TABLE} (LIKE {DATA_TABLE})")
        conn.execute(f"ALTER TABLE {BY_VEHICLE_TABLE} ADD PRIMARY KEY (vehicle_id, id)")
        conn.execute(f"SELECT create_distributed_table('{BY_VEHICLE_TABLE}', 'vehicle_id', colocate_with => 'none')")
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE '%%pkey'",
                               (DATA_TABLE,)).fetchall()
        for (definition,) in indexes:
            conn.execute(definition.replace(DATA_TABLE, BY_VEHICLE_TABLE))
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {BY_VEHICLE_TABLE} SELECT * FROM {DATA_TABLE}")
        conn.execute(f"VACUUM (ANALYZE) {BY_VEHICLE_TABLE}")
        return {"rows_copied_seconds": round(time.perf_counter() - started, 3)}


def drop_variants(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SEED_TABLE}, {BY_VEHICLE_TABLE}")


# ---- workers (the successor of worker-benchmark.sh) ------------------------------------------------------
def workers(rw: str, leaders: dict[str, str], params: dict[str, Any], names: Sequence[str], warmup: int,
            repeat: int) -> dict[str, Any]:
    """p50 of each query through the coordinator, through each worker leader (query from any node), and over
    each worker's own shards only (what one worker contributes to a fanned-out query).

    `leaders` maps a label (e.g. "worker1") to that group leader's superuser DSN as reachable from here.
    """
    chosen = [q for q in QUERIES if q.name in names]
    with connect(rw) as conn:
        shards = conn.execute(
            "SELECT n.nodename || ':' || n.nodeport, array_agg(s.shard_name::text ORDER BY s.shardid) "
            "FROM citus_shards s JOIN pg_dist_node n "
            "ON (n.nodename, n.nodeport) = (s.nodename, s.nodeport) AND n.noderole = 'primary' "
            "WHERE s.table_name = %s::regclass GROUP BY 1", (DATA_TABLE,)).fetchall()
    by_node = dict(shards)
    results: dict[str, Any] = {}
    with progress("workers", total=len(chosen) * (1 + 2 * len(leaders))) as bar:
        for query in chosen:
            row = {"coordinator": time_query(rw, query, TABLE, params, warmup, repeat)["summary"]["p50"]}
            bar.advance(1)
            for label, dsn in leaders.items():
                row[f"{label} (any node)"] = time_query(dsn, query, TABLE, params, warmup, repeat)["summary"]["p50"]
                bar.advance(1)
                node = _node_of(dsn, by_node)
                if node is not None:
                    local = "(" + " UNION ALL ".join(f"SELECT * FROM {s}" for s in by_node[node]) + ") AS local_shards"
                    row[f"{label} (own shards)"] = time_query(dsn, query, local, params, warmup, repeat)["summary"][
                        "p50"]
                bar.advance(1)
            results[query.name] = row
    return results


def _node_of(dsn: str, by_node: dict[str, list[str]]) -> str | None:
    """Which pg_dist_node entry a DSN reaches (by the server's own port and listen address)."""
    with connect(dsn) as conn:
        port = conn.execute("SELECT current_setting('port')").fetchone()[0]
    return next((node for node in by_node if node.rsplit(":", 1)[1] == port), None)


# ---- client overhead -------------------------------------------------------------------------------------
def overhead(rw: str, params: dict[str, Any], clients: int = 16, duration: float = 10.0,
             query_name: str = "radius_5km") -> dict[str, Any]:
    """The same query at `clients` through pgbench and through this runner; the ratio says who is the limit."""
    pgbench = shutil.which("pgbench") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if pgbench is None:
        return {"skipped": "pgbench not found (it ships with the PostgreSQL server package)"}
    query = next(q for q in QUERIES if q.name == query_name)
    sql = query.sql.format(table=TABLE).replace("%(now)s", f"'{params['now'].isoformat()}'::timestamptz")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(sql + ";\n")
    url = urlsplit(rw)  # the password travels in the environment, never on a command line
    env = {**os.environ, "PGPASSWORD": unquote(url.password or "")}
    bare = urlunsplit(url._replace(netloc=url.netloc.rsplit("@", 1)[1] if "@" in url.netloc else url.netloc))
    user = ["-U", unquote(url.username)] if url.username else []
    seconds = str(max(1, round(duration)))  # pgbench counts whole seconds
    argv = [pgbench, "-n", "-c", str(clients), "-j", str(min(clients, 4)), "-T", seconds, *user, "-f", script.name]
    done = subprocess.run([*argv, bare], capture_output=True, text=True, env=env, timeout=duration + 120)
    Path(script.name).unlink()
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchmarkError(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")
    pgbench_tps = float(match.group(1))
    runner = run_clients(rw, TABLE, params, [query], clients, duration)
    return {"query": query_name, "clients": clients, "pgbench_tps": pgbench_tps, "runner_tps": runner["tps"],
            "runner_over_pgbench": round(runner["tps"] / pgbench_tps, 3)}


# ---- read scaling (issue 15): standbys vs the leader --------------------------------------------------------
READS_PROBE = "read_scaling_probe"  # a table of the step's own: written by the probe, dropped at the end


def read_scaling(rw: str, ro: str, leaders: dict[str, str], data: Dataset, params: dict[str, Any],
                 names: Sequence[str], clients: int = 16, duration: float = 10.0,
                 parallel: int = 4) -> dict[str, Any]:
    """Reads through the standbys (the read-only endpoint: a coordinator standby, shards on the workers'
    secondaries) against the same reads through the leader (read-write endpoint), at `clients` clients, back to
    back per query; and the staleness a reader on the standbys sees while the benchmark's load (COPY over
    `parallel` connections) writes: replication lag on every group's leader, and how often a row just committed
    through rw is not yet visible through ro (default commit, then synchronous_commit = remote_apply).

    `leaders` maps a label to each group leader's superuser DSN (for pg_stat_replication)."""
    with connect(ro) as conn:
        on_standby, secondary = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('citus.use_secondary_nodes')").fetchone()
    out: dict[str, Any] = {"clients": clients, "duration_s": duration,
                           "ro_session": {"on_standby": on_standby, "use_secondary_nodes": secondary}}
    out["staleness"] = staleness_under_load(rw, ro, leaders, lambda: load(rw, data, parallel=parallel))
    workloads: dict[str, list[Query]] = {n: [q for q in QUERIES if q.name == n] for n in names}
    workloads["mix"] = [q for q in QUERIES if q.name in names]
    throughput_rows: dict[str, Any] = {}
    with progress(f"reads at {clients} clients: leader vs standbys", total=2 * len(workloads)) as bar:
        for label, mix in workloads.items():
            leader = run_clients(rw, TABLE, params, mix, clients, duration)
            bar.advance(1)
            standbys = run_clients(ro, TABLE, params, mix, clients, duration)
            bar.advance(1)
            throughput_rows[label] = {"leader (rw)": leader, "standbys (ro)": standbys,
                                      "ro / rw": round(standbys["tps"] / leader["tps"], 2) if leader["tps"] else None}
    out["throughput"] = throughput_rows
    return out


def staleness_under_load(rw: str, ro: str, leaders: dict[str, str], write: Callable[[], Any],
                         sample_every: float = 0.25) -> dict[str, Any]:
    """Run `write` while sampling replication lag and probing read-your-writes through ro; then settle."""
    with connect(rw) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {READS_PROBE}")
        conn.execute(f"CREATE TABLE {READS_PROBE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.execute(f"SELECT create_distributed_table('{READS_PROBE}', 'id')")
    done = threading.Event()
    lag: dict[str, list[tuple[int, float | None]]] = {label: [] for label in leaders}
    probes: dict[str, list[float]] = {"flush (default)": [], "remote_apply": []}
    missed: dict[str, int] = {mode: 0 for mode in probes}

    def sample() -> None:
        conns = {label: connect(dsn) for label, dsn in leaders.items()}
        try:
            while not done.is_set():
                for label, conn in conns.items():
                    for behind, replay_ms in conn.execute(
                            "SELECT (pg_current_wal_lsn() - replay_lsn)::bigint, "
                            "extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication").fetchall():
                        lag[label].append((int(behind or 0), None if replay_ms is None else float(replay_ms)))
                time.sleep(sample_every)
        finally:
            for conn in conns.values():
                conn.close()

    def probe() -> None:
        """Commit one row through rw, then read it through ro until it is there: how long a reader waits."""
        key = 0
        with connect(rw) as writer, connect(ro) as reader:
            writer.execute("SET citus.propagate_set_commands = 'local'")  # SET LOCAL reaches the worker too
            while not done.is_set():
                for mode in probes:
                    key += 1
                    with writer.transaction():
                        if mode == "remote_apply":
                            writer.execute("SET LOCAL synchronous_commit = remote_apply")
                        writer.execute(f"INSERT INTO {READS_PROBE} (id) VALUES (%s)", (key,))
                    committed = time.perf_counter()
                    first = True
                    while reader.execute(f"SELECT 1 FROM {READS_PROBE} WHERE id = %s", (key,)).fetchone() is None:
                        if first:
                            missed[mode] += 1
                            first = False
                        if time.perf_counter() - committed > 60:
                            raise BenchmarkError("a row committed through rw is not visible through ro after 60 s")
                        time.sleep(0.001)
                    probes[mode].append(time.perf_counter() - committed)
                time.sleep(0.05)

    failures: list[str] = []

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except (psycopg.Error, BenchmarkError) as exc:  # reported with the results, not lost in a thread
                failures.append(f"{body.__name__}: {exc}")
        return run

    threads = [threading.Thread(target=guarded(sample)), threading.Thread(target=guarded(probe))]
    for t in threads:
        t.start()
    try:
        started = time.perf_counter()
        written = write()
        seconds = time.perf_counter() - started
    finally:
        done.set()
        for t in threads:
            t.join()
    with connect(rw) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {READS_PROBE}")
    out: dict[str, Any] = {"write": written if isinstance(written, dict) else {}, "seconds": round(seconds, 2),
                           "replication_lag": {}, "read_your_writes": {}, "failures": failures}
    for label, samples in lag.items():
        behind = [b for b, _ in samples]
        replay = [r for _, r in samples if r is not None]
        out["replication_lag"][label] = {
            "samples": len(samples),
            "bytes_p50": round(percentile(behind, 50)) if behind else None,
            "bytes_max": max(behind) if behind else None,
            "replay_lag_ms_p50": round(percentile(replay, 50), 1) if replay else None,
            "replay_lag_ms_p99": round(percentile(replay, 99), 1) if replay else None,
            "replay_lag_ms_max": round(max(replay), 1) if replay else None}
    for mode, waits in probes.items():
        out["read_your_writes"][mode] = {
            "probes": len(waits), "not_visible_at_first_read": missed[mode],
            "wait_ms_p50": round(percentile(waits, 50) * 1000, 2) if waits else None,
            "wait_ms_max": round(max(waits) * 1000, 2) if waits else None}
    return out
