"""The `defaults` step (issue 16): the seed's 5 km query on the cluster and on a single node, each "as shipped"
(PostgreSQL's and Citus's own defaults), "tuned" (the settings cluster/tuning.py derives; the single node gets
the very values a worker runs with) and "tuned + spatial order" (each side's rows rewritten in the order of its
spatial index: sql/0005's vehicle_locations_order_by_location() on the cluster, CLUSTER on the single node).

The cluster's settings are switched with ALTER SYSTEM on the coordinator leader and every worker leader (and
reset afterwards, even on failure); the single node's per session (`options=-c ...` in its DSN, so the baseline
DSN must reach PostgreSQL itself: PgBouncer refuses startup options). "As shipped" values are read from each
server's pg_settings.boot_val, never typed in here. shared_buffers needs a restart, so both sides keep what
they were started with in every phase (reported).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from benchmarks import steps
from benchmarks.errors import BenchmarkError
from benchmarks.progress import progress
from benchmarks.workload import COMPARE_QUERIES, DATA_TABLE, TABLE, CompareQuery, Dataset, Query

# What differs between "as shipped" and "tuned" (shared_buffers too, but it needs a restart: reported only).
SESSION_SETTINGS = ("jit", "max_parallel_workers_per_gather", "work_mem", "effective_cache_size")
CITUS_SETTINGS = ("citus.max_adaptive_executor_pool_size", "citus.max_cached_conns_per_worker")
REPORTED = (*SESSION_SETTINGS, *CITUS_SETTINGS, "shared_buffers")

PHASES = ("as shipped", "tuned", "tuned + spatial order")
CLUSTER_PRUNED, CLUSTER_FUNCTION, SINGLE = ("cluster: pruned plain query", "cluster: vehicle_locations_within",
                                            "single node")
# The pruned query through the any-node endpoint (every group's leader plans it): measured when given.
CLUSTER_ANY_NODE = "cluster: pruned plain query via any-node"
SINGLE_NODE_INDEX = f"{TABLE}_geom_idx"  # workload.SINGLE_NODE_SCHEMA's spatial index on location


# ---- pure parts ---------------------------------------------------------------------------------------------
def setting_text(value: str, unit: str | None) -> str:
    """A pg_settings value with its unit as a SET would take it: ('4096', 'kB') -> '4096kB',
    ('524288', '8kB') -> '4194304kB', ('on', None) -> 'on'."""
    if not unit:
        return value
    if unit[0].isdigit():  # '8kB', '16MB': the value counts blocks of that size
        digits = "".join(c for c in unit if c.isdigit())
        return f"{int(value) * int(digits)}{unit[len(digits):]}"
    return f"{value}{unit}"


def with_options(dsn: str, settings: dict[str, str]) -> str:
    """`dsn` (a postgresql:// URL) whose sessions start with `settings` (libpq's options=-c name=value ...).
    Options already in the DSN stay in front; ours come after, so they win."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise BenchmarkError("the baseline DSN must be a postgresql:// URL (it carries the single node's session "
                             "settings as options=...); a key=value DSN was given")
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    before = next((v for k, v in parse_qsl(parts.query) if k == "options"), "")
    ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
    query.append(("options", f"{before} {ours}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # libpq reads + as a plus


def alter_system(settings: dict[str, str]) -> list[str]:
    """ALTER SYSTEM statements setting each (quoted literals), then the reload that applies them."""
    return [f"ALTER SYSTEM SET {name} = '{value}'" for name, value in settings.items()] + [
        "SELECT pg_reload_conf()"]


def reset_system(names: Sequence[str]) -> list[str]:
    return [f"ALTER SYSTEM RESET {name}" for name in names] + ["SELECT pg_reload_conf()"]


def single_node_order(table: str = TABLE, index: str = SINGLE_NODE_INDEX) -> list[str]:
    """What a competent user runs on one PostGIS server after a bulk load: its rows in spatial index order."""
    return [f"CLUSTER {table} USING {index}", f"ANALYZE {table}"]


def pruned(query: CompareQuery) -> Query:
    """The README's plain path: the query on the distributed table with the key function's constant keys."""
    if query.keys is None:
        raise BenchmarkError(f"{query.name} has no spatial predicate to prune with")
    sql = query.plain.replace("{table}", DATA_TABLE).replace("{keys}", f"spatial_key = ANY ({query.keys}) AND ")
    return Query(query.name, sql, query.index, query.what)


def ratios(datasets: dict[str, Any], clients: int) -> dict[str, Any]:
    """The issue's targets per data set and phase: the cluster's default path against the single node in
    the same phase (latency target <= 0.75, throughput target >= 0.75), and shard skew (<= 2)."""
    out: dict[str, Any] = {}
    for name, entry in datasets.items():
        for phase, systems in entry["phases"].items():
            single = systems[SINGLE]
            for system in (CLUSTER_PRUNED, CLUSTER_FUNCTION, CLUSTER_ANY_NODE):
                if system not in systems:
                    continue
                mine = systems[system]
                out[f"{name}, {phase}: 5 km p50, {system} / single node (target <= 0.75)"] = round(
                    mine["latency"]["radius_5km"]["p50"] / single["latency"]["radius_5km"]["p50"], 2)
                out[f"{name}, {phase}: 5 km at {clients} clients, {system} q/s / single node (target >= 0.75)"] = (
                    round(mine["throughput"]["tps"] / max(single["throughput"]["tps"], 1e-9), 2))
        out[f"{name}: shard rows max / mean (target <= 2)"] = entry["skew"]["shard_rows_max_over_mean"]
    return out


# ---- I/O --------------------------------------------------------------------------------------------------
def settings_of(dsn: str, names: Sequence[str], boot: bool = False) -> dict[str, str]:
    """The named settings a session on `dsn` runs with (boot: PostgreSQL's or the extension's built-in default)."""
    column = "boot_val" if boot else "setting"
    with steps.connect(dsn) as conn:
        rows = conn.execute(f"SELECT name, {column}, unit FROM pg_settings WHERE name = ANY (%s)",
                            (list(names),)).fetchall()
    return {name: setting_text(value, unit) for name, value, unit in rows}


def _run_all(dsns: Sequence[str], statements: Sequence[str]) -> None:
    for dsn in dsns:
        with steps.connect(dsn) as conn:
            for statement in statements:
                conn.execute(statement)


def _measure(dsn: str, table: str, query: Query, params: dict[str, Any], warmup: int, repeat: int,
             clients: int, duration: float) -> dict[str, Any]:
    timed = steps.time_query(dsn, query, table, params, warmup, repeat)
    return {"latency": {query.name: timed["summary"] | {"rows": timed["rows"], "tasks": timed["explain"]["tasks"]}},
            "throughput": steps.run_clients(dsn, table, params, [query], clients, duration) | {"clients": clients}}


def run(rw: str, nodes: Sequence[str], baseline: str, datasets: Sequence[Dataset], params: dict[str, Any],
        warmup: int, repeat: int, clients: int, duration: float, parallel: int, any_node: str = "") -> dict[str, Any]:
    """`nodes`: superuser DSNs of the coordinator leader and every worker leader (where ALTER SYSTEM goes);
    `baseline`: a single PostgreSQL + PostGIS server reached directly (not through PgBouncer); `any_node`: the
    any-node endpoint, measured too when given."""
    radius = next(q for q in COMPARE_QUERIES if q.name == "radius_5km")
    queries = {CLUSTER_PRUNED: (rw, DATA_TABLE, pruned(radius)), CLUSTER_FUNCTION: (rw, TABLE, radius.query(True)),
               SINGLE: (baseline, TABLE, radius.query(False))}
    if any_node:
        queries[CLUSTER_ANY_NODE] = (any_node, DATA_TABLE, pruned(radius))
    shipped_cluster = settings_of(nodes[0], (*SESSION_SETTINGS, *CITUS_SETTINGS), boot=True)
    shipped_single = settings_of(baseline, SESSION_SETTINGS, boot=True)
    out: dict[str, Any] = {"query": radius.what, "clients": clients, "duration_s": duration, "repeat": repeat,
                           "settings": {}, "datasets": {}}
    try:
        with progress("defaults", total=len(datasets) * len(PHASES) * len(queries)) as bar:
            for data in datasets:
                entry: dict[str, Any] = {"load": steps.load(rw, data, parallel=parallel)}
                entry["skew"] = steps.distribution(rw)["skew"]
                if not out.get("single_node_schema"):
                    out["single_node_schema"] = steps.prepare_single_node(baseline, data, parallel)["copy"]
                    entry["single_node_load"] = out["single_node_schema"]
                else:
                    entry["single_node_load"] = steps.load(baseline, data, table=TABLE, parallel=parallel)
                entry["phases"], entry["order_seconds"] = {}, {}
                for phase in PHASES:
                    if phase == "as shipped":
                        _run_all(nodes, alter_system(shipped_cluster))
                        single_settings = shipped_single
                    else:
                        _run_all(nodes, reset_system(list(shipped_cluster)))
                        worker = settings_of(nodes[-1], SESSION_SETTINGS)  # what a worker runs with
                        single_settings = worker
                    if phase == "tuned + spatial order":
                        entry["order_seconds"] = order_both(rw, baseline)
                    single_dsn = with_options(baseline, single_settings)
                    out["settings"][phase] = {
                        "cluster coordinator": settings_of(nodes[0], REPORTED),
                        "cluster worker": settings_of(nodes[-1], REPORTED),
                        "single node": settings_of(single_dsn, [n for n in REPORTED if n not in CITUS_SETTINGS])}
                    entry["phases"][phase] = {}
                    for system, (dsn, table, query) in queries.items():
                        dsn = single_dsn if system == SINGLE else dsn
                        entry["phases"][phase][system] = _measure(dsn, table, query, params, warmup, repeat,
                                                                  clients, duration)
                        bar.advance(1)
                out["datasets"][data.name] = entry
    finally:
        _run_all(nodes, reset_system(list(shipped_cluster)))
    out["ratios"] = ratios(out["datasets"], clients)
    return out


def order_both(rw: str, baseline: str) -> dict[str, float]:
    """Rewrite both sides in spatial index order; seconds each took."""
    seconds = {}
    ordered = steps.spatial_order(rw)
    if "skipped" in ordered:
        raise BenchmarkError(f"cannot order the cluster's shards: {ordered['skipped']}")
    seconds["cluster"] = round(ordered["seconds"], 2)
    started = time.perf_counter()
    _run_all([baseline], single_node_order())
    seconds["single node"] = round(time.perf_counter() - started, 2)
    return seconds
