"""Reports from a results dict: results.json, report.md, one self-contained report.html, and PNG plots.

The results dict (every step optional):
  meta:         {command, started, rows, seed, machine {...}, versions {...}, target}
  load:         {table, rows, seconds, rows_per_s, method}
  queries:      {query: {summary {count,min,mean,p50,p95,p99,max ms}, rows, explain {indexes, tasks}, index_used}}
  concurrency:  {query or "mix": {clients: {tps, p50, p95, p99, errors, count}}}
  distribution: {table, shard_count, shards [...], workers [...], skew {...}, colocation [...]}
  workers:      {query: {"coordinator": p50, "<group> (any node)": p50, "<group> (own shards)": p50}}
  overhead:     {query, clients, pgbench_tps, runner_tps, runner_over_pgbench}
  compare:      {datasets: {uniform|skewed: {load, skew, latency {system: {query: summary+tasks+rows}},
                 concurrency {system: {query: {clients: {tps, ...}}}}}}, ratios: {name: value}}
  defaults:     {datasets: {name: {load, skew, single_node_load, order_seconds, phases {phase: {system: {latency
                 {query: summary+rows+tasks}, throughput {tps, clients, ...}}}}}}, settings {phase: {side: {...}}},
                 ratios}
  cpu:          {query, rounds, queries, clients, duration_s, sides {system: {cpu_ms {kind: ms per query}, wall_ms,
                 server_ms_by_round, tps_by_round}}, ratios}
  ha:           {drills: [DrillResult.summary()], timeline: {second: [ok, failed]}, medians {...}}
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                                 if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["memory_gib"] = round(int(meminfo[0].split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return info


# ---- markdown ---------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def sections(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) of every table the reports show; markdown and HTML render the same tables."""
    out: list[tuple[str, list[str], list[list[Any]]]] = []
    if load := results.get("load"):
        rows = [[v["method"], v["rows"], v["seconds"], v["rows_per_s"]] for v in (load if isinstance(load, list)
                                                                               else [load])]
        out.append(("Load", ["method", "rows", "seconds", "rows/s"], rows))
    if queries := results.get("queries"):
        out.append(("Single-query latency (ms)", ["query", "p50", "p95", "p99", "rows", "index used", "tasks"], [
            [name, q["summary"]["p50"], q["summary"]["p95"], q["summary"]["p99"], q["rows"],
             ", ".join(q["explain"]["indexes"]) or "none", q["explain"]["tasks"]]
            for name, q in queries.items()]))
    if conc := results.get("concurrency"):
        rows = [[label, clients, v["tps"], v.get("p50"), v.get("p95"), v.get("p99"), v["errors"]]
                for label, by_clients in conc.items() for clients, v in by_clients.items()]
        out.append(("Concurrency", ["workload", "clients", "queries/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows))
    if dist := results.get("distribution"):
        out.append(("Distribution per worker", ["node", "shards", "rows", "MiB"], [
            [w["node"], w["shards"], w["rows"], round(w["bytes"] / 2**20, 1)] for w in dist["workers"]]))
        out.append(("Skew", ["measure", "value"], [[k, v] for k, v in dist["skew"].items()]
                    + [["shard count", dist["shard_count"]]]))
    if (workers := results.get("workers")) and "skipped" not in workers:
        columns = list(next(iter(workers.values())))
        out.append(("Per node: p50 ms (coordinator, through each worker, each worker's own shards)",
                    ["query", *columns], [[q, *(row.get(c, "") for c in columns)] for q, row in workers.items()]))
    if (over := results.get("overhead")) and "skipped" not in over:
        out.append(("Client overhead", ["query", "clients", "pgbench q/s", "runner q/s", "runner / pgbench"],
                    [[over["query"], over["clients"], over["pgbench_tps"], over["runner_tps"],
                      over["runner_over_pgbench"]]]))
    if compare := results.get("compare"):
        for dataset, entry in compare["datasets"].items():
            systems = list(entry["latency"])
            names = list(next(iter(entry["latency"].values())))
            out.append((f"Compare ({dataset} data): p50 ms [tasks]", ["query", *systems], [
                [q, *(f"{entry['latency'][s][q]['p50']} [{entry['latency'][s][q]['tasks'] or '-'}]"
                      for s in systems)] for q in names]))
            conc = entry["concurrency"]
            if conc:
                csys = list(conc)
                rows = [[q, n, *(conc[s][q][n]["tps"] for s in csys)]
                        for q in conc[csys[0]] for n in conc[csys[0]][q]]
                out.append((f"Compare ({dataset} data): queries/s by clients", ["query", "clients", *csys], rows))
            out.append((f"Compare ({dataset} data): shard balance", ["measure", "value"],
                        [[k, v] for k, v in entry["skew"].items()]))
        if ratios := compare.get("ratios"):
            out.append(("Targets", ["ratio", "value"], [[k, v] for k, v in ratios.items()]))
    if defaults := results.get("defaults"):
        out.extend(defaults_sections(defaults))
    if cpu := results.get("cpu"):
        out.extend(cpu_sections(cpu))
    if (reads := results.get("reads")) and "skipped" not in reads:
        n = reads["clients"]
        out.append((f"Reads at {n} clients: leader (rw) vs standbys (ro)",
                    ["workload", "leader q/s", "standbys q/s", "ro / rw", "leader p50 ms", "standbys p50 ms",
                     "errors (rw/ro)"],
                    [[label, v["leader (rw)"]["tps"], v["standbys (ro)"]["tps"], v["ro / rw"],
                      v["leader (rw)"].get("p50"), v["standbys (ro)"].get("p50"),
                      f"{v['leader (rw)']['errors']}/{v['standbys (ro)']['errors']}"]
                     for label, v in reads["throughput"].items()]))
        stale = reads["staleness"]
        out.append((f"Replication lag while loading ({stale['seconds']} s of COPY)",
                    ["group leader", "samples", "bytes p50", "bytes max", "replay lag p50 ms", "p99 ms", "max ms"],
                    [[label, v["samples"], v["bytes_p50"], v["bytes_max"], v["replay_lag_ms_p50"],
                      v["replay_lag_ms_p99"], v["replay_lag_ms_max"]]
                     for label, v in stale["replication_lag"].items()]))
        out.append(("Read-your-writes through ro while loading", ["commit", "probes", "not visible at first read",
                                                                  "wait p50 ms", "wait max ms"],
                    [[mode, v["probes"], v["not_visible_at_first_read"], v["wait_ms_p50"], v["wait_ms_max"]]
                     for mode, v in stale["read_your_writes"].items()]))
    if ha := results.get("ha"):
        out.append(("HA drills", ["scenario", "victim", "first write s", "all writes ok s", "recovered s", "acked",
                                  "lost", "during-failure write %"], [
            [d["scenario"], d["victim"], d["first_write_after"], d["writes_all_ok_after"], d["recovered_after"],
             d["acknowledged"], d["lost"], d["phases"]["during failure"]["write_success_pct"]]
            for d in ha["drills"]]))
        if medians := ha.get("medians"):
            out.append(("HA medians", ["scenario", "drills", "first write s", "all writes ok s", "recovered s",
                                       "lost (total)", "split-brain s (max)", "failed writes", "histories valid"],
                        [[s, *m] for s, m in medians.items()]))
    return out


def defaults_sections(defaults: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The defaults step (issue 16): per data set, phase by system, the 5 km p50 and the throughput."""
    out: list[tuple[str, list[str], list[list[Any]]]] = []
    n = defaults["clients"]
    for dataset, entry in defaults["datasets"].items():
        rows = []
        for phase, systems in entry["phases"].items():
            for system, v in systems.items():
                lat = v["latency"]["radius_5km"]
                rows.append([phase, system, lat["p50"], lat["p95"], lat["rows"], lat["tasks"] or "-",
                             v["throughput"]["tps"], v["throughput"].get("p50"), v["throughput"]["errors"]])
        out.append((f"Defaults ({dataset} data): the 5 km radius query", [
            "phase", "system", "p50 ms", "p95 ms", "rows", "tasks", f"q/s at {n} clients", f"p50 ms at {n}",
            "errors"], rows))
        out.append((f"Defaults ({dataset} data): load, order, balance", ["measure", "value"], [
            ["cluster load s (COPY)", entry["load"]["seconds"]],
            ["single node load s (COPY)", entry["single_node_load"]["seconds"]],
            *([f"spatial order s, {side}", s] for side, s in entry["order_seconds"].items()),
            *([k, v] for k, v in entry["skew"].items())]))
    settings = defaults["settings"]
    names = sorted({k for phase in settings.values() for side in phase.values() for k in side})
    out.append(("Defaults: settings in each phase", ["phase", "side", *names], [
        [phase, side, *(values.get(k, "") for k in names)]
        for phase, sides in settings.items() for side, values in sides.items()]))
    out.append(("Defaults: targets", ["ratio", "value"], [[k, v] for k, v in defaults["ratios"].items()]))
    return out


def cpu_sections(cpu: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The cpu step (issue 16): CPU ms per query by process kind, each side, and the ratios it implies."""
    sides = cpu["sides"]
    names = list(sides)
    kinds = sorted({k for v in sides.values() for k in v["cpu_ms"]})
    rows = [[k, *(sides[n]["cpu_ms"].get(k, "") for n in names)] for k in kinds]
    rows.append(["wall ms per query (one client)", *(sides[n]["wall_ms"] for n in names)])
    rows.append(["database side ms, each round", *(" / ".join(map(str, sides[n]["server_ms_by_round"]))
                                                   for n in names)])
    rows.append([f"q/s at {cpu['clients']} clients, each round",
                 *(" / ".join(map(str, sides[n]["tps_by_round"])) for n in names)])
    return [(f"CPU per query ({cpu['query']}; median of {cpu['rounds']} rounds of {cpu['queries']}), ms",
             ["process", *names], rows),
            ("CPU per query: what it implies", ["ratio", "value"], [[k, v] for k, v in cpu["ratios"].items()])]


def render_markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = ["# Benchmark report", "", f"Command: `{meta.get('command', '')}`  ", f"Started: {meta.get('started', '')}",
             ""]
    for title, header, rows in sections(results):
        lines += [f"## {title}", "", *_table(header, rows)]
    return "\n".join(lines)


# ---- plots ------------------------------------------------------------------------------------------------
def make_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)

    if queries := results.get("queries"):
        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(queries)
        for i, pct in enumerate(("p50", "p95", "p99")):
            ax.bar([x + i * 0.27 for x in range(len(names))], [queries[n]["summary"][pct] for n in names], 0.27,
                   label=pct)
        ax.set_xticks([x + 0.27 for x in range(len(names))], names, rotation=20)
        ax.set_ylabel("ms")
        ax.set_title("Single-query latency")
        ax.legend()
        save(fig, "latency.png")
    if conc := results.get("concurrency"):
        fig, ax = plt.subplots(figsize=(8, 4))
        for label, by_clients in conc.items():
            xs = sorted(int(c) for c in by_clients)
            ax.plot(xs, [by_clients[str(c)]["tps"] for c in xs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("clients")
        ax.set_ylabel("queries/s")
        ax.set_title("Throughput vs clients")
        ax.legend(fontsize=8)
        save(fig, "throughput.png")
    if dist := results.get("distribution"):
        fig, ax = plt.subplots(figsize=(9, 3.5))
        shards = dist["shards"]
        nodes = sorted({s["node"] for s in shards})
        ax.bar(range(len(shards)), [s["rows"] for s in shards],
               color=[f"C{nodes.index(s['node'])}" for s in shards])
        ax.set_xlabel("shard (colour = worker)")
        ax.set_ylabel("rows")
        ax.set_title(f"Rows per shard ({dist['table']})")
        save(fig, "distribution.png")
    if compare := results.get("compare"):
        datasets = compare["datasets"]
        fig, axes = plt.subplots(1, len(datasets), figsize=(9 * len(datasets), 4), squeeze=False)
        for ax, (dataset, entry) in zip(axes[0], datasets.items(), strict=True):
            systems = list(entry["latency"])
            names = list(next(iter(entry["latency"].values())))
            width = 0.8 / max(len(systems), 1)
            for i, system in enumerate(systems):
                ax.bar([x + i * width for x in range(len(names))],
                       [entry["latency"][system][q]["p50"] for q in names], width, label=system)
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20)
            ax.set_yscale("log")
            ax.set_ylabel("p50 ms (log)")
            ax.set_title(f"Compare strategies ({dataset} data)")
            ax.legend(fontsize="small")
        save(fig, "compare.png")
    if (ha := results.get("ha")) and ha.get("timeline"):
        timeline = ha["timeline"]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        seconds = [int(s) for s in timeline["seconds"]]
        ax.bar(seconds, timeline["ok"], color="tab:green", label="successful writes")
        ax.bar(seconds, timeline["failed"], bottom=timeline["ok"], color="tab:red", label="failed writes")
        marks = [(timeline["kill_at"], timeline.get("damage", "kill")), (timeline["recovered_at"], "healthy")]
        if timeline.get("healed_at") is not None:
            marks.append((timeline["healed_at"], "healed"))
        for at, label in marks:
            ax.axvline(at, color="black", linestyle="--")
            ax.text(at, ax.get_ylim()[1] * 0.9, f" {label}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("writes per second")
        ax.set_title(timeline["title"])
        ax.legend(loc="lower right")
        save(fig, "ha-timeline.png")
    return made


# ---- html -------------------------------------------------------------------------------------------------
def render_html(results: dict[str, Any], plots: list[Path]) -> str:
    meta = results.get("meta", {})
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>citus-cluster benchmark</title><style>",
             "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}th{background:#eee}td:first-child{text-align:left}img{max-width:100%}",
             "</style></head><body><h1>citus-cluster benchmark</h1>",
             f"<p>Command: <code>{html.escape(str(meta.get('command', '')))}</code><br>"
             f"Started: {html.escape(str(meta.get('started', '')))}<br>"
             f"Machine: {html.escape(json.dumps(meta.get('machine', {})))}</p>"]
    for title, header, rows in sections(results):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for plot in plots:
        data = base64.b64encode(plot.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(plot.stem)}</h2><img alt='{plot.stem}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "results.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    files["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    files["markdown"].write_text(render_markdown(results))
    plots = make_plots(results, out_dir)
    files["html"].write_text(render_html(results, plots))
    return {**files, **{p.stem: p for p in plots}}
