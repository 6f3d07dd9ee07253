"""`python -m benchmarks run|ha`: the successor of the seed's benchmark.sh and ha-benchmark.sh.

python -m benchmarks run --harness DIR [--rows 1000000] [--steps load,queries,...] [--baseline-dsn URL]
python -m benchmarks run --stack dev | --dsn URL
python -m benchmarks ha  --harness DIR [--scenario coordinator-leader-kill ...] [--repeat 5]
python -m benchmarks pooling --harness DIR [--clients 100,250,500,1000] [--duration 30]
    (clients served with and without PgBouncer, and the latency it adds at 16 clients)
python -m benchmarks scale --cpu-per-host 0.3 [--groups 0,1,2,4] [--rows 1000000] [--load-via rw,any-node] [--out DIR]
    (the scale-out curve: each system brought up on hosts of a fixed size, measured, taken down; 0 = single node)
    (partition-* and etcd-quorum-loss-* need a namespaced harness: `python -m cluster local up --namespaces`)
Reports (results.json, report.md, report.html, PNGs) go to --out (default benchmarks/results/<timestamp>).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import steps
from benchmarks.errors import BenchmarkError
from benchmarks.ha import PARTITIONS, SCENARIOS, DockerCluster, HarnessCluster, run_drill
from benchmarks.report import machine_info, write_reports
from benchmarks.stats import per_second
from benchmarks.workload import (
    BY_VEHICLE_TABLE,
    COMPARE_NAMES,
    COMPARE_QUERIES,
    DATA_TABLE,
    QUERY_NAMES,
    SEED_TABLE,
    TABLE,
    Dataset,
)
from cluster.errors import UsageError, at_the_edge
from cluster.provision.health import check
from cluster.provision.target import ClusterTarget, pulumi_outputs, resolve_target
from cluster.secrets import redact

STEPS = ("load", "queries", "concurrency", "distribution", "workers", "overhead", "compare", "reads", "defaults",
         "cpu")
# `reads` (read scaling, issue 15) reloads the data set while it measures staleness, and `defaults` (issue 16)
# switches the cluster's settings with ALTER SYSTEM and needs --baseline-dsn, as `cpu` does (it reads the
# servers' processes in /proc: they must run on this machine): only when asked for.
DEFAULT_STEPS = tuple(s for s in STEPS if s not in ("reads", "defaults", "cpu"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "ha"):
        sub = commands.add_parser(name)
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--harness", type=Path, metavar="DIR",
                           help="a local cluster directory (`python -m cluster local up`)")
        where.add_argument("--stack", help="a deployed Pulumi stack (DSNs from `pulumi stack output`)")
        if name == "run":
            where.add_argument("--dsn", help="the read-write DSN of any Citus cluster")
        sub.add_argument("--out", type=Path, help="report directory (default benchmarks/results/<timestamp>)")
    run = commands.choices["run"]
    run.add_argument("--steps", default=",".join(DEFAULT_STEPS),
                     help=f"comma-separated subset of {','.join(STEPS)} (default: all but reads)")
    run.add_argument("--rows", type=int, default=1_000_000)
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--parallel", type=int, default=4, help="loader connections")
    run.add_argument("--warmup", type=int, default=2)
    run.add_argument("--repeat", type=int, default=10, help="timed repetitions per query")
    run.add_argument("--clients", default="1,4,16,64")
    run.add_argument("--duration", type=float, default=10.0, help="seconds per client count")
    run.add_argument("--concurrency-queries", default="radius_5km,bbox,vehicle_track")
    run.add_argument("--read-clients", type=int, default=16,
                     help="reads step: clients for the leader (rw) vs standbys (ro) throughput")
    run.add_argument("--ro-dsn", help="reads step with --dsn: the read-only endpoint's DSN (with its options)")
    run.add_argument("--baseline-dsn", help="a single PostgreSQL+PostGIS database to compare with")
    run.add_argument("--any-node-dsn", default="",
                     help="the defaults and cpu steps also measure the pruned query through this (any-node) endpoint")
    run.add_argument("--cpu-rounds", type=int, default=3, help="cpu step: rounds, the sides measured in turn")
    run.add_argument("--compare-datasets", default="uniform,skewed", help="compare on these data sets, in order")
    run.add_argument("--compare-concurrency", default="radius_500m,radius_5km,bbox,knn_10,vehicle_track",
                     help=f"compare throughput for these of {','.join(COMPARE_NAMES)} (50 km returns most rows: "
                          "at many clients it measures the client's memory)")
    pooling = commands.add_parser("pooling", help="clients served with and without PgBouncer; latency it adds")
    pooling.add_argument("--harness", type=Path, metavar="DIR", required=True,
                         help="a local cluster directory (`python -m cluster local up`)")
    pooling.add_argument("--out", type=Path, help="report directory (default benchmarks/results/<timestamp>)")
    pooling.add_argument("--clients", default="100,250,500,1000", help="client counts tried, in order")
    pooling.add_argument("--duration", type=float, default=30.0, help="seconds of the 16-client latency run")
    pooling.add_argument("--rows", type=int, default=100_000, help="rows loaded first when the table has fewer")
    scale = commands.add_parser("scale", help="the scale-out curve on emulated hosts of a fixed size")
    scale.add_argument("--cpu-per-host", type=float, required=True, metavar="CORES",
                       help="the size of every emulated host (a cgroup cpu quota per database member)")
    scale.add_argument("--groups", default="0,1,2,4", help="worker group counts to measure, 0 = the single node")
    scale.add_argument("--rows", default="1000000", help="row counts (comma-separated: the data curve)")
    scale.add_argument("--seed", type=int, default=42)
    scale.add_argument("--parallel", type=int, default=4, help="loader connections through read-write")
    scale.add_argument("--load-via", default="rw", metavar="rw|any-node|rw,any-node",
                       help="where the COPY streams go (both: one load after the other, in this order, each timed; "
                            "the single node has one endpoint and loads once)")
    scale.add_argument("--load-streams", type=int, default=0, metavar="N",
                       help="COPY streams through any-node (default 0: one per group leader behind it)")
    scale.add_argument("--batch-rows", type=int, default=250_000,
                       help="rows per COPY statement (a batch failing in the transport is sent again)")
    scale.add_argument("--warmup", type=int, default=2)
    scale.add_argument("--repeat", type=int, default=10, help="timed repetitions per query")
    scale.add_argument("--clients", type=int, default=16, help="clients of the throughput run")
    scale.add_argument("--duration", type=float, default=10.0, help="seconds of each throughput run")
    scale.add_argument("--no-tls", action="store_true",
                       help="measurement only: every link without TLS (the report marks such runs)")
    scale.add_argument("--work-dir", default="/tmp", help="where each system's cluster directory goes")
    scale.add_argument("--out", type=Path, help="report directory (runs/*.json are kept and merged)")
    ha = commands.choices["ha"]
    ha.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable; default: both leader kills")
    ha.add_argument("--repeat", type=int, default=5, help="drills per scenario (medians need >= 5)")
    ha.add_argument("--writers", type=int, default=4)
    ha.add_argument("--readers", type=int, default=2)
    args = parser.parse_args(argv)
    out = args.out or Path("benchmarks/results") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {"command": redact(command),  # reports get committed: no DSN password in them
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info()}
    return at_the_edge("benchmarks", lambda: _run(args, meta, out))


def _run(args: argparse.Namespace, meta: dict[str, Any], out: Path) -> int:
    if args.command == "pooling":
        from benchmarks import pooling

        pooling.raise_open_files()
        steps_ = [int(c) for c in args.clients.split(",") if c]
        pooling.run(args.harness, out, steps_, args.duration, args.rows, meta)
        print(f"reports in {out}: report.md, results.json")
        return 0
    if args.command == "scale":
        from benchmarks import scale

        print(f"report: {scale.run(args, meta, out)}")
        return 0
    results = run_benchmarks(args, meta) if args.command == "run" else run_ha(args, meta)
    files = write_reports(results, out)
    print(f"reports in {out}: " + ", ".join(sorted(p.name for p in files.values())))
    return 0


def cluster_target(args: argparse.Namespace) -> ClusterTarget | None:
    """The cluster named by --harness or --stack, resolved once (None for a bare --dsn: no member addresses)."""
    if args.harness or args.stack:
        return resolve_target(stack=args.stack, local=args.harness)
    return None


def worker_leaders(target: ClusterTarget) -> dict[str, str]:
    """Each worker group's current leader DSN as reachable from here (published ports), by group label."""
    leaders = check(target).leaders
    return {f"worker{g}": next(m.dsn for m in target.members if m.name == name)
            for g, name in sorted(leaders.items()) if g != 0}


def run_benchmarks(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    chosen = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(chosen) - set(STEPS)
    if unknown:
        raise UsageError(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    target = cluster_target(args)
    rw = args.dsn or target.rw_dsn
    data = Dataset(args.rows, args.seed)
    params = {"now": data.now}
    with steps.connect(rw) as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0] is None:
            raise BenchmarkError(f"{TABLE} does not exist: run `python -m cluster provision` first (it applies sql/)")
        meta["versions"] = dict(conn.execute(
            "SELECT 'postgres', current_setting('server_version') UNION ALL "
            "SELECT extname, extversion FROM pg_extension WHERE extname IN ('citus', 'postgis')").fetchall())
    meta |= {"rows": args.rows, "seed": args.seed, "steps": chosen}
    results: dict[str, Any] = {"meta": meta}
    if "load" in chosen:
        results["load"] = steps.load(rw, data, parallel=args.parallel)
        results["load"]["spatial_order"] = steps.spatial_order(rw)  # the README's step after a bulk load
    if "queries" in chosen:
        results["queries"] = steps.queries(rw, TABLE, params, args.warmup, args.repeat)
    if "concurrency" in chosen:
        clients = [int(c) for c in args.clients.split(",")]
        names = [n for n in args.concurrency_queries.split(",") if n]
        if set(names) - set(QUERY_NAMES):
            raise UsageError(f"unknown queries {sorted(set(names) - set(QUERY_NAMES))}; known: {QUERY_NAMES}")
        results["concurrency"] = steps.concurrency(rw, TABLE, params, clients, args.duration, names)
    if "distribution" in chosen:
        results["distribution"] = steps.distribution(rw)
    if "workers" in chosen:
        leaders = worker_leaders(target) if target else {}
        names = [n for n in args.concurrency_queries.split(",") if n]
        results["workers"] = steps.workers(rw, leaders, params, names, args.warmup, args.repeat) if leaders else {
            "skipped": "needs --harness or --stack (member addresses)"}
    if "overhead" in chosen:
        results["overhead"] = steps.overhead(rw, params, clients=16, duration=args.duration)
    if "compare" in chosen:
        results["compare"] = compare(args, rw, data, params, results)
    if "reads" in chosen:
        results["reads"] = reads(args, target, rw, data, params)
    if "defaults" in chosen:
        results["defaults"] = defaults_step(args, target, rw, data, params)
    if "cpu" in chosen:
        results["cpu"] = cpu_step(args, rw, params)
    return results


def most_clients(args: argparse.Namespace) -> int:
    """The largest of --clients: the many-client window of the defaults and cpu steps."""
    return max(int(c) for c in args.clients.split(","))


def cpu_step(args: argparse.Namespace, rw: str, params: dict[str, Any]) -> dict[str, Any]:
    """CPU per 5 km query by process, and throughput at the most --clients, the cluster's default path (and
    any-node) vs the single node, in turn."""
    from benchmarks import cpusplit, defaults

    if not args.baseline_dsn:
        raise UsageError("the cpu step needs --baseline-dsn (the single PostGIS server to set the cluster against)")
    radius = next(q for q in COMPARE_QUERIES if q.name == "radius_5km")
    systems = {defaults.CLUSTER_PRUNED: (rw, DATA_TABLE, defaults.pruned(radius))}
    if args.any_node_dsn:
        systems[defaults.CLUSTER_ANY_NODE] = (args.any_node_dsn, DATA_TABLE, defaults.pruned(radius))
    systems[defaults.SINGLE] = (args.baseline_dsn, TABLE, radius.query(False))
    clients = most_clients(args)
    out = cpusplit.run(systems, params, rounds=args.cpu_rounds, queries=args.repeat * 2, warmup=args.warmup + 1,
                       clients=clients, duration=args.duration)
    out["ratios"] = cpusplit.summary(out["sides"], defaults.CLUSTER_PRUNED, defaults.SINGLE, clients)
    return out


def defaults_step(args: argparse.Namespace, target: ClusterTarget | None, rw: str, data: Dataset,
                  params: dict[str, Any]) -> dict[str, Any]:
    """As shipped vs tuned vs tuned + spatial order, cluster and single node (benchmarks/defaults.py)."""
    from benchmarks import defaults

    if not args.baseline_dsn or target is None:
        raise UsageError("the defaults step needs --harness or --stack (it sets the cluster's settings on every "
                         "group leader) and --baseline-dsn (a single PostGIS server reached directly, not "
                         "through PgBouncer: its settings travel as startup options)")
    leaders = check(target).leaders
    nodes = [next(m.dsn for m in target.members if m.name == name) for _, name in sorted(leaders.items())]
    datasets = [Dataset(data.rows, data.seed, data.now, skewed=name == "skewed")
                for name in args.compare_datasets.split(",") if name]
    clients = most_clients(args)
    return defaults.run(rw, nodes, args.baseline_dsn, datasets, params, args.warmup, args.repeat, clients,
                        args.duration, args.parallel, any_node=args.any_node_dsn)


def reads(args: argparse.Namespace, target: ClusterTarget | None, rw: str, data: Dataset,
          params: dict[str, Any]) -> dict[str, Any]:
    """Read throughput through the standbys vs the leader, and what a reader on the standbys sees lag by."""
    ro = args.ro_dsn or (target.ro_dsn if target else "")
    if not ro:
        return {"skipped": "needs --harness, --stack or --ro-dsn (the read-only endpoint)"}
    names = [n for n in args.concurrency_queries.split(",") if n]
    leaders: dict[str, str] = {}
    if target:
        found = check(target).leaders
        leaders = {("coordinator" if g == 0 else f"worker{g}"): next(m.dsn for m in target.members if m.name == name)
                   for g, name in sorted(found.items())}
    return steps.read_scaling(rw, ro, leaders, data, params, names, clients=args.read_clients,
                              duration=args.duration, parallel=args.parallel)


SPATIAL, FAN_OUT, BY_VEHICLE, SEED, SINGLE = ("spatial (functions)", "spatial (plain, fan-out)", "by vehicle",
                                              "seed schema", "single node")


def compare(args: argparse.Namespace, rw: str, data: Dataset, params: dict[str, Any],
            results: dict[str, Any]) -> dict[str, Any]:
    """Per data set (uniform, skewed): the same queries and rows on the spatial schema through its functions
    and as plain fan-out queries, on the by-vehicle strategy, on the seed's schema and on a single node:
    latency with EXPLAIN task counts, throughput at each client count, shard balance. Leaves the last data
    set loaded."""
    out: dict[str, Any] = {"datasets": {}}
    clients = [int(c) for c in args.clients.split(",")]
    concurrent = [q for q in COMPARE_QUERIES if q.name in args.compare_concurrency.split(",")]
    for skewed in [name == "skewed" for name in args.compare_datasets.split(",")]:
        ds = Dataset(data.rows, data.seed, data.now, skewed=skewed)
        loaded = results.get("load")
        same = loaded and loaded["dataset"] == ds.name and loaded["rows"] == ds.rows  # the load step's rows
        entry: dict[str, Any] = {"load": loaded if same else steps.load(rw, ds, parallel=args.parallel)}
        entry["skew"] = steps.distribution(rw)["skew"]
        steps.prepare_seed_schema(rw)
        steps.prepare_by_vehicle(rw)
        systems = {SPATIAL: (rw, TABLE, True), FAN_OUT: (rw, TABLE, False), BY_VEHICLE: (rw, BY_VEHICLE_TABLE, False),
                   SEED: (rw, SEED_TABLE, False)}
        if args.baseline_dsn:
            if "single_node_load" not in results:
                results["single_node_load"] = steps.prepare_single_node(args.baseline_dsn, ds, args.parallel)
            else:
                steps.load(args.baseline_dsn, ds, table=TABLE, parallel=args.parallel)
            systems[SINGLE] = (args.baseline_dsn, TABLE, False)
        entry["latency"] = {
            system: {q.name: _p50(steps.time_query(dsn, q.query(fn), table, params, args.warmup, args.repeat))
                     for q in COMPARE_QUERIES}
            for system, (dsn, table, fn) in systems.items()}
        entry["concurrency"] = {
            system: {q.name: {str(n): steps.run_clients(dsn, table, params, [q.query(fn)], n, args.duration)
                              for n in clients} for q in concurrent}
            for system, (dsn, table, fn) in systems.items() if system != SEED}
        out["datasets"][ds.name] = entry
    steps.drop_variants(rw)
    out["ratios"] = _compare_ratios(out["datasets"])
    if (load := results.get("load")) and (single := results.get("single_node_load")):
        out["ratios"]["load: single-node seed INSERT s / cluster COPY s (target >= 2)"] = round(
            single["seed_insert"]["seconds"] / load["seconds"], 2)
    return out


def _p50(timed: dict[str, Any]) -> dict[str, Any]:
    return timed["summary"] | {"tasks": timed["explain"]["tasks"], "rows": timed["rows"]}


def _compare_ratios(datasets: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, from one run."""
    ratios: dict[str, Any] = {}
    for name, entry in datasets.items():
        lat, conc = entry["latency"], entry["concurrency"]
        ratios[f"{name}: radius_5km p50, spatial functions / fan-out"] = round(
            lat[SPATIAL]["radius_5km"]["p50"] / lat[FAN_OUT]["radius_5km"]["p50"], 2)
        ratios[f"{name}: radius_5km p50, spatial functions / seed schema"] = round(
            lat[SPATIAL]["radius_5km"]["p50"] / lat[SEED]["radius_5km"]["p50"], 3)
        if SINGLE in lat:
            ratios[f"{name}: radius_5km p50, spatial functions / single node (target < 1.0)"] = round(
                lat[SPATIAL]["radius_5km"]["p50"] / lat[SINGLE]["radius_5km"]["p50"], 2)
            if "16" in conc[SPATIAL].get("radius_5km", {}):
                ratios[f"{name}: radius_5km at 16 clients, spatial q/s / single node q/s (target >= 0.8)"] = round(
                    conc[SPATIAL]["radius_5km"]["16"]["tps"] / max(conc[SINGLE]["radius_5km"]["16"]["tps"], 1e-9), 2)
        ratios[f"{name}: shard rows max / mean (target <= 2)"] = entry["skew"]["shard_rows_max_over_mean"]
    return ratios


def run_ha(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    if args.harness:
        cluster: Any = HarnessCluster.from_dir(str(args.harness))
    else:
        from cluster.config import load_config
        from cluster.config.sources import read_stack_file, stack_file
        from cluster.plan import build_plan
        from cluster.provision.target import admin_dsn

        outputs = pulumi_outputs(args.stack)
        cluster = DockerCluster(build_plan(load_config(*read_stack_file(stack_file(args.stack))).config),
                                admin_dsn(outputs), outputs.get("app_ro_dsn") or outputs["ro_dsn"])
    scenarios = args.scenario or ["coordinator-leader-kill", "worker-leader-kill"]
    drills, first = [], None
    for scenario in scenarios:
        for i in range(args.repeat):
            result = run_drill(cluster, scenario, writers=args.writers, readers=args.readers)
            print(f"{scenario} #{i + 1}: first write {result.first_write_after} s, all writes ok "
                  f"{result.writes_all_ok_after} s, healthy {result.recovered_after} s, lost {result.lost}, "
                  f"split-brain {result.verdict['split_brain_window']} s, history "
                  f"{'valid' if result.verdict['valid'] else result.verdict['problems'][:3]}", file=sys.stderr)
            drills.append(result.summary())
            first = first or result
    medians = {
        s: [len(ds := [d for d in drills if d["scenario"] == s]),
            _median(ds, "first_write_after"), _median(ds, "writes_all_ok_after"), _median(ds, "recovered_after"),
            sum(d["lost"] for d in ds), max(d["verdict"]["split_brain_window"] for d in ds),
            statistics.median(d["verdict"]["failed_writes"] for d in ds), sum(d["verdict"]["valid"] for d in ds)]
        for s in scenarios
    }
    assert first is not None
    writes = [(a.finished, a.ok) for a in first.attempts if a.kind == "write"]
    seconds = per_second(writes, 0.0, max(t for t, _ in writes) if writes else 0.0)
    timeline = {"title": f"{first.scenario}: writes per second (one drill)", "seconds": [s for s, _, _ in seconds],
                "ok": [ok for _, ok, _ in seconds], "failed": [f for _, _, f in seconds], "kill_at": first.kill_at,
                "recovered_at": first.kill_at + (first.recovered_after or 0),
                "damage": "cut" if first.scenario in PARTITIONS else "kill",
                "healed_at": None if first.healed_after is None else first.kill_at + first.healed_after}
    return {"meta": meta | {"scenarios": scenarios, "repeat": args.repeat}, "ha": {
        "drills": drills, "medians": medians, "timeline": timeline}}


def _median(drills: list[dict[str, Any]], key: str) -> float | None:
    values = [d[key] for d in drills if d[key] is not None]
    return round(statistics.median(values), 2) if values else None


if __name__ == "__main__":
    sys.exit(main())
