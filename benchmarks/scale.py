"""`python -m benchmarks scale`: the scale-out curve (issue 16 item 2) — what a user buys by adding machines.

Every database member runs on an emulated host of `--cpu-per-host` cores (a cgroup cpu quota, see
cluster/local/cpuhosts.py); the single node gets one such host. For the single node and for each worker group
count it brings a local cluster up, loads the seed's data set, measures the seed's workload (ingest rate, 5 km
radius / bbox / 10 nearest p50, 16-client throughput of the 5 km query through the read-write endpoint and the
any-node endpoint) and takes the cluster down again. Each system's numbers are kept in <out>/runs/<label>.json,
so systems can be measured in separate invocations; report.md is rendered from every run in <out>.

The single node is plain Patroni + PostGIS (`local up --no-citus`) with the project's indexes, tuned by the same
derivation as the cluster (cluster/tuning.py: resources.database.cpus = the host size, the same memory).

Pure parts (labels, ratios, verdicts, the report text) first; the I/O shell (`measure`, `run`) below.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.errors import BenchmarkError
from cluster.errors import UsageError

SINGLE = 0  # "groups" of the single node in --groups
QUERY_NAMES = ("radius_5km", "bbox", "knn_10")
THROUGHPUT_QUERY = "radius_5km"
# The targets at 4 worker hosts, each against the single node on one host of the same size.
TARGETS = {"tps": 2.5, "ingest": 2.5, "radius_p50": 0.4}
TARGET_GROUPS = 4
# --load-via: where the COPY streams go. read-write: the coordinator routes every row to its shard (its host
# does all the parsing and routing); any-node: the streams spread over the group leaders, each routing its own
# share (Citus 13 COPYs into a distributed table from any node with metadata).
LOAD_VIA = {"rw": "read-write", "read-write": "read-write", "any-node": "any-node"}


# ---- pure: what to run ------------------------------------------------------------------------------------
def parse_groups(text: str) -> list[int]:
    """'0,1,2,4' -> [0, 1, 2, 4] (0 = the single node); refuses what no run can be."""
    try:
        groups = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise UsageError(f"--groups takes worker group counts separated by commas (0 = single node), got {text!r}")\
            from None
    if not groups or any(g < 0 for g in groups):
        raise UsageError(f"--groups takes counts >= 0 (0 = the single node), e.g. 0,1,2,4; got {text!r}")
    return list(dict.fromkeys(groups))


def parse_load_via(text: str) -> list[str]:
    """'rw,any-node' -> ['read-write', 'any-node']: the endpoints to load through, in this order (each load
    empties the table first; the last one's rows are what the queries read)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in LOAD_VIA for n in names):
        raise UsageError(f"--load-via takes rw, any-node or both (comma-separated, in order), got {text!r}")
    return list(dict.fromkeys(LOAD_VIA[n] for n in names))


def load_streams(via: str, groups: int, parallel: int, any_node_streams: int) -> int:
    """COPY streams of one load: --parallel through read-write; through any-node --load-streams, or by default
    one per group leader behind the endpoint (coordinator and workers), so HAProxy's leastconn gives each its
    share."""
    if via == "any-node":
        return any_node_streams if any_node_streams > 0 else hosts_of(groups)
    return parallel


def label(groups: int, rows: int) -> str:
    """The run's file name: single-1m, groups4-5m."""
    return f"{'single' if groups == SINGLE else f'groups{groups}'}-{rows_label(rows)}"


def rows_label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def system_name(groups: int, tls: bool = True) -> str:
    name = "single node" if groups == SINGLE else f"{groups} worker group{'s' if groups > 1 else ''}"
    return name if tls else f"{name} (no TLS)"


def hosts_of(groups: int) -> int:
    """Database hosts the system runs on: the single node's one, or a coordinator plus one per worker group."""
    return 1 if groups == SINGLE else 1 + groups


def cluster_overrides(groups: int, shared_buffers: str) -> dict[str, Any]:
    """The config of one measured system: one member per group (no standbys: they would share the 2 cores
    without serving a query), one etcd member; shared_buffers as the derivation gives for the host's memory
    (the harness pins a small value otherwise)."""
    return {"etcd": {"members": 1}, "coordinator": {"members": 1},
            "workers": {"groups": max(groups, 1), "members": 1},
            "postgresql": {"parameters": {"shared_buffers": shared_buffers}}}


# ---- pure: from runs to ratios and a report --------------------------------------------------------------
def summary(run: dict[str, Any]) -> dict[str, float | None]:
    """The numbers the curve plots, from one run's results."""
    q = run.get("queries", {})
    tput = run.get("throughput", {})
    loads = run.get("loads") or {"read-write": run.get("load", {})}
    retried = [len(load.get("retries", [])) for load in loads.values() if "retries" in load]

    def p50(name: str, where: dict[str, Any] = q) -> float | None:
        return where.get(name, {}).get("summary", {}).get("p50")

    return {
        "ingest": loads.get("read-write", {}).get("rows_per_s"),
        "ingest_any": loads.get("any-node", {}).get("rows_per_s"),
        "copy_retries": sum(retried) if retried else None,
        "radius_p50": p50("radius_5km"), "bbox_p50": p50("bbox"), "knn_p50": p50("knn_10"),
        "radius_p50_any": p50("radius_5km", run.get("queries_any_node", {})),
        "tps": tput.get("read-write", {}).get("tps"), "tps_any": tput.get("any-node", {}).get("tps"),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return round(value / base, 2)


def ratios(runs: dict[str, dict[str, Any]], rows: int) -> dict[int, dict[str, float | None]]:
    """Each cluster's numbers over the single node's, same rows: higher is better for ingest and q/s, lower
    for latency. The any-node throughput is set against the single node's (it has one endpoint only)."""
    base_run = runs.get(label(SINGLE, rows))
    if base_run is None:
        return {}
    base = summary(base_run)
    out = {}
    for run in runs.values():
        if run["rows"] != rows or run["groups"] == SINGLE:
            continue
        s = summary(run)
        out[run["groups"]] = {
            "ingest": ratio(s["ingest"], base["ingest"]), "ingest_any": ratio(s["ingest_any"], base["ingest"]),
            "radius_p50": ratio(s["radius_p50"], base["radius_p50"]),
            "radius_p50_any": ratio(s["radius_p50_any"], base["radius_p50"]),
            "bbox_p50": ratio(s["bbox_p50"], base["bbox_p50"]), "knn_p50": ratio(s["knn_p50"], base["knn_p50"]),
            "tps": ratio(s["tps"], base["tps"]), "tps_any": ratio(s["tps_any"], base["tps"])}
    return dict(sorted(out.items()))


def verdicts(r: dict[str, float | None]) -> list[tuple[str, str, float | None, str]]:
    """(what, target, measured, met|missed) for the issue's three targets at TARGET_GROUPS worker hosts. Each
    target counts as met through either endpoint (read-write, or any-node, which spreads the coordinator's work
    over the group leaders: both are the product's), and the verdict says which one it took."""
    def judge(value: float | None, target: float, higher: bool) -> str:
        if value is None:
            return "not measured"
        return "met" if (value >= target if higher else value <= target) else "missed"

    def best_of(rw: float | None, any_node: float | None, higher: bool = True) -> tuple[float | None, str]:
        measured = [v for v in (rw, any_node) if v is not None]
        best = (max if higher else min)(measured, default=None)
        return best, "" if best is None else " (any-node)" if best == any_node and best != rw else " (read-write)"

    tps, via = best_of(r.get("tps"), r.get("tps_any"))
    ingest, ingest_via = best_of(r.get("ingest"), r.get("ingest_any"))
    radius, radius_via = best_of(r.get("radius_p50"), r.get("radius_p50_any"), higher=False)
    return [
        (f"16-client 5 km q/s{via}", f">= {TARGETS['tps']}x", tps, judge(tps, TARGETS["tps"], True)),
        (f"ingest rows/s{ingest_via}", f">= {TARGETS['ingest']}x", ingest, judge(ingest, TARGETS["ingest"], True)),
        (f"5 km radius p50{radius_via}", f"<= {TARGETS['radius_p50']}x", radius,
         judge(radius, TARGETS["radius_p50"], False)),
    ]


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], width: int = 40, mark: float | None = None) -> str:
    """A text bar chart: one line per (name, value), scaled to the largest value; `mark` draws a '|' at that
    value (a target)."""
    values = [v for _, v in bars if v is not None] + ([mark] if mark is not None else [])
    top = max(values, default=0) or 1
    name_w = max((len(n) for n, _ in bars), default=0)
    lines = [title]
    for name, value in bars:
        n = 0 if value is None else round(value / top * width)
        row = list("#" * n + " " * (width - n))
        if mark is not None:
            at = min(width - 1, round(mark / top * width))
            row[at] = "|" if row[at] == " " else "+"
        lines.append(f"  {name.ljust(name_w)} {''.join(row)} {'-' if value is None else f'{value:g}'}")
    if mark is not None:
        lines.append(f"  {' ' * name_w} ('|' / '+' = target {mark:g})")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows), ""]


def render(runs: dict[str, dict[str, Any]]) -> str:
    """report.md from every run: per row count a table of the numbers, one of the ratios against the single
    node with the issue's targets, text plots of the curves, and where each host's quota bound."""
    if not runs:
        return "# Scale-out curve\n\nNo runs yet.\n"
    first = next(iter(runs.values()))
    cpus = first["cpu_per_host"]
    lines = ["# Scale-out curve (issue 16, item 2)", "",
             f"Every database member on an emulated host of **{cpus:g} core** (cgroup v1 cpu quota "
             f"{first['quota_us']} us per {first['period_us']} us, held by Patroni, its postmaster and every "
             "backend, the member's PgBouncer and exporter); the single node on one host of the same size. "
             "Coordinator and worker groups with one member each (no standbys: on 2 shared cores they would only "
             "take CPU from the client), one etcd member; etcd, HAProxy and the client are not held to a quota. "
             f"Machine: {first.get('machine', {}).get('cpus')} CPUs ({first.get('machine', {}).get('cpu_model', '?')})"
             ", shared by everything.", ""]
    for rows in sorted({r["rows"] for r in runs.values()}):
        chosen = sorted((r for r in runs.values() if r["rows"] == rows), key=lambda r: r["groups"])
        lines += [f"## {rows:,} rows", ""]
        header = ["system", "hosts (cores)", "ingest rows/s", "5 km p50 ms", "bbox p50 ms", "10 nearest p50 ms",
                  "5 km p50 ms, any-node", "16 clients 5 km q/s (rw)", "16 clients q/s (any-node)",
                  "ingest rows/s, any-node", "COPY batches retried"]
        table = []
        for run in chosen:
            s = summary(run)
            hosts = hosts_of(run["groups"])
            table.append([system_name(run["groups"], run.get("tls", True)), f"{hosts} ({hosts * cpus:g})",
                          s["ingest"], s["radius_p50"],
                          s["bbox_p50"], s["knn_p50"], s["radius_p50_any"], s["tps"], s["tps_any"],
                          s["ingest_any"], s["copy_retries"]])
        lines += _table(header, table)
        r = ratios(runs, rows)
        if r:
            lines += ["Against the single node on one host (ingest and q/s: × higher is better; latency: × lower "
                      "is better):", ""]
            lines += _table(["worker groups", "ingest", "5 km p50", "5 km p50 any-node", "bbox p50",
                             "10 nearest p50", "16-client q/s rw", "16-client q/s any-node", "ingest any-node"],
                            [[g, v["ingest"], v["radius_p50"], v["radius_p50_any"], v["bbox_p50"], v["knn_p50"],
                              v["tps"], v["tps_any"], v["ingest_any"]] for g, v in r.items()])
            if TARGET_GROUPS in r:
                lines += [f"Targets at {TARGET_GROUPS} worker hosts:", ""]
                lines += _table(["what", "target", "measured", "verdict"],
                                [list(v) for v in verdicts(r[TARGET_GROUPS])])
            names = [("single node", 1.0)]
            lines += ["```", bar_chart("16-client 5 km throughput, × single node (read-write endpoint)",
                                       names + [(system_name(g), v["tps"]) for g, v in r.items()],
                                       mark=TARGETS["tps"]), "",
                      bar_chart("16-client 5 km throughput, × single node (any-node endpoint)",
                                names + [(system_name(g), v["tps_any"]) for g, v in r.items()],
                                mark=TARGETS["tps"]), "",
                      bar_chart("ingest rows/s, × single node (read-write endpoint)",
                                names + [(system_name(g), v["ingest"]) for g, v in r.items()],
                                mark=TARGETS["ingest"]), "",
                      *([bar_chart("ingest rows/s, × single node (any-node endpoint)",
                                   names + [(system_name(g), v["ingest_any"]) for g, v in r.items()],
                                   mark=TARGETS["ingest"]), ""]
                        if any(v["ingest_any"] is not None for v in r.values()) else []),
                      bar_chart("5 km radius p50, × single node (read-write endpoint; lower is better)",
                                names + [(system_name(g), v["radius_p50"]) for g, v in r.items()],
                                mark=TARGETS["radius_p50"]), "",
                      bar_chart("5 km radius p50, × single node (any-node endpoint; lower is better)",
                                names + [(system_name(g), v["radius_p50_any"]) for g, v in r.items()],
                                mark=TARGETS["radius_p50"]), "```", ""]
        throttled = [[system_name(run["groups"]), endpoint, member, f"{share:.0%}"]
                     for run in chosen for endpoint, hosts in run.get("throttled", {}).items()
                     for member, share in hosts.items()]
        loading = [[system_name(run["groups"]), f"load via {via}", member, f"{share:.0%}"]
                   for run in chosen for via, hosts in run.get("load_throttled", {}).items()
                   for member, share in hosts.items()]
        throttled += loading
        if throttled:
            lines += ["Share of CFS periods in which each host used up its quota during the 16-client runs "
                      "and the loads (cpu.stat nr_throttled / nr_periods): the host that sits at its quota is "
                      "the bottleneck.", ""]
            lines += _table(["system", "endpoint", "host (member)", "throttled"], throttled)
        retried = [[system_name(run["groups"]), via, r.get("stream"), r["batch"], r["attempt"], r["error"]]
                   for run in chosen for via, load in (run.get("loads") or {"read-write": run.get("load", {})}).items()
                   for r in load.get("retries", [])]
        if retried:
            lines += ["COPY batches that failed in the transport and were sent again on a new connection (each "
                      "rolled back whole; the row count after the load proves none was doubled):", ""]
            lines += _table(["system", "load via", "stream", "batch", "attempt", "error"], retried)
    data = data_curve(runs)
    if data:
        lines += ["## Data curve", "", "Same systems, more rows (p50 ms; q/s at 16 clients through read-write):", ""]
        lines += _table(["system", "rows", "ingest rows/s", "5 km p50", "bbox p50", "10 nearest p50", "16-client q/s"],
                        data)
    return "\n".join(lines).rstrip() + "\n"


def data_curve(runs: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Rows of the systems measured at more than one row count, by system then rows."""
    by_groups: dict[int, list[dict[str, Any]]] = {}
    for run in runs.values():
        by_groups.setdefault(run["groups"], []).append(run)
    out = []
    for groups, found in sorted(by_groups.items()):
        if len({r["rows"] for r in found}) < 2:
            continue
        for run in sorted(found, key=lambda r: r["rows"]):
            s = summary(run)
            out.append([system_name(groups, run.get("tls", True)), f"{run['rows']:,}", s["ingest"],
                        s["radius_p50"], s["bbox_p50"], s["knn_p50"], s["tps"]])
    return out


def throttled_share(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Per host: throttled periods / periods between two cpu.stat readings ((nr_periods, nr_throttled))."""
    out = {}
    for member, (periods, throttled) in after.items():
        p0, t0 = before.get(member, (0, 0))
        out[member] = round((throttled - t0) / (periods - p0), 3) if periods > p0 else 0.0
    return out


# ---- I/O shell ----------------------------------------------------------------------------------------------
def read_runs(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def write_report(out: Path) -> Path:
    """report.md from every run in `out`, then `notes.md` if there is one (what the runs cannot say: a run that
    failed, say)."""
    path = out / "report.md"
    notes = out / "notes.md"
    path.write_text(render(read_runs(out)) + (f"\n{notes.read_text()}" if notes.exists() else ""))
    return path


def _cpu_stats(groups: dict[str, str]) -> dict[str, tuple[int, int]]:
    from cluster.local import cpuhosts

    stats = {}
    for member, group in groups.items():
        fields = dict(line.split() for line in (cpuhosts.CPU_ROOT / group / "cpu.stat").read_text().splitlines())
        stats[member] = (int(fields["nr_periods"]), int(fields["nr_throttled"]))
    return stats


def measure(groups: int, rows: int, cpus: float, args: Any, work_dir: Path) -> dict[str, Any]:
    """Bring one system up on hosts of `cpus` cores, load `rows`, measure, take it down."""
    from benchmarks import steps
    from benchmarks.workload import QUERIES, SINGLE_NODE_SCHEMA, TABLE, Dataset
    from cluster.local.harness import Harness, harness_config
    from cluster.provision import provision, read_migrations
    from cluster.tuning import memory_parameters

    overrides = cluster_overrides(groups, "64MB")
    config = harness_config(overrides, cpus)
    overrides = cluster_overrides(groups, memory_parameters(config)["shared_buffers"])
    config = harness_config(overrides, cpus)
    directory = work_dir / f"s16-scale-{label(groups, rows)}"
    if directory.exists():
        raise BenchmarkError(f"{directory} exists (a run left behind?): `python -m cluster local down --dir "
                             f"{directory}` or remove it, then run again")
    tls = not getattr(args, "no_tls", False)
    harness = Harness.create(config, directory, citus=groups != SINGLE, cpu_per_host=cpus, tls=tls)
    data = Dataset(rows, args.seed)
    params = {"now": data.now}
    result: dict[str, Any] = {"groups": groups, "rows": rows, "cpu_per_host": cpus, "tls": tls}
    finished = False
    try:
        harness.up()
        host = harness.cpu_hosts[0]
        result |= {"quota_us": host.quota_us, "period_us": host.period_us,
                   "hosts": {h.member: h.group for h in harness.cpu_hosts},
                   "settings": {k: str(v) for k, v in _settings(harness.target.rw_dsn).items()}}
        rw = harness.target.rw_dsn
        batch_rows = getattr(args, "batch_rows", steps.COPY_BATCH_ROWS)
        members = {h.member: h.group for h in harness.cpu_hosts}
        if groups == SINGLE:  # the second group of a --no-citus harness is an idle stand-by node: not a host
            members = {k: v for k, v in members.items() if k == harness.plan.coordinators[0].name}
        if groups == SINGLE:
            with steps.connect(rw) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                for statement in SINGLE_NODE_SCHEMA:
                    conn.execute(statement)
            before = _cpu_stats(members)
            result["loads"] = {"read-write": steps.load(rw, data, table=TABLE, parallel=args.parallel,
                                                        batch_rows=batch_rows)}
            result["load_throttled"] = {"read-write": throttled_share(before, _cpu_stats(members))}
        else:
            provision(harness.target, read_migrations(Path(__file__).resolve().parents[1] / "sql"))
            result["loads"], result["load_throttled"] = {}, {}
            for via in parse_load_via(getattr(args, "load_via", "rw")):
                before = _cpu_stats(members)
                result["loads"][via] = steps.load(
                    rw, data, parallel=load_streams(via, groups, args.parallel, getattr(args, "load_streams", 0)),
                    copy_dsn=harness.dsn("any-node") if via == "any-node" else rw, batch_rows=batch_rows, via=via)
                result["load_throttled"][via] = throttled_share(before, _cpu_stats(members))
        loads = result["loads"]
        result["load"] = loads.get("read-write") or next(iter(loads.values()))
        result["queries"] = steps.queries(rw, TABLE, params, args.warmup, args.repeat, names=QUERY_NAMES)
        endpoints = {"read-write": rw}
        if groups != SINGLE:
            endpoints["any-node"] = harness.dsn("any-node")
            result["queries_any_node"] = steps.queries(endpoints["any-node"], TABLE, params, args.warmup,
                                                       args.repeat, names=[THROUGHPUT_QUERY])
        query = [q for q in QUERIES if q.name == THROUGHPUT_QUERY]
        result["throughput"], result["throttled"] = {}, {}
        for endpoint, dsn in endpoints.items():
            before = _cpu_stats(members)
            result["throughput"][endpoint] = steps.run_clients(dsn, TABLE, params, query, args.clients, args.duration)
            result["throttled"][endpoint] = throttled_share(before, _cpu_stats(members))
        finished = True
    finally:
        harness.down(remove=finished)  # a failed run keeps its logs (processes stopped, cgroups removed)
        if not finished:
            print(f"{label(groups, rows)} failed: logs kept in {directory}/logs; remove {directory} before the "
                  "next run", flush=True)
    return result


def _settings(dsn: str) -> dict[str, Any]:
    from benchmarks import steps

    names = ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather",
             "citus.max_adaptive_executor_pool_size", "citus.max_cached_conns_per_worker")
    with steps.connect(dsn) as conn:
        return {n: conn.execute("SELECT current_setting(%s, true)", (n,)).fetchone()[0] for n in names}


def run(args: Any, meta: dict[str, Any], out: Path) -> Path:
    """Measure each system named by --groups at each --rows, keeping each run's JSON as it finishes."""
    from cluster.local import cpuhosts

    parse_load_via(getattr(args, "load_via", "rw"))  # refused before any cluster comes up
    cpuhosts.require_controller()
    cpuhosts.check_size(args.cpu_per_host, meta["machine"].get("cpus") or 1)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir)
    for rows in [int(r) for r in str(args.rows).split(",") if r]:
        for groups in parse_groups(args.groups):
            started = time.monotonic()
            result = measure(groups, rows, args.cpu_per_host, args, work)
            result |= {"machine": meta["machine"], "command": meta["command"], "started": meta["started"],
                       "seconds": round(time.monotonic() - started, 1)}
            (out / "runs" / f"{label(groups, rows)}.json").write_text(json.dumps(result, indent=2))
            s = summary(result)
            print(f"{label(groups, rows)}: " + ", ".join(f"{k} {v}" for k, v in s.items()) +
                  f" ({result['seconds']} s)", flush=True)
            write_report(out)
    return write_report(out)

