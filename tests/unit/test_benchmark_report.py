"""Every report file is produced from a fixed results dict, self-contained and complete."""

import json
from pathlib import Path

from benchmarks.ha import Attempt, phase_rates
from benchmarks.report import render_markdown, write_reports

SUMMARY = {"count": 10, "min": 1.0, "mean": 2.0, "p50": 2.0, "p95": 3.0, "p99": 3.5, "max": 4.0}
RESULTS = {
    "meta": {"command": "python -m benchmarks run --rows 10", "started": "2026-11-24T00:00:00+00:00"},
    "load": {"table": "vehicle_locations", "rows": 10, "seconds": 0.5, "rows_per_s": 20, "method": "COPY"},
    "queries": {
        name: {"summary": SUMMARY, "rows": 3, "explain": {"indexes": ["x_geog_idx_102008"], "tasks": 8},
               "intended_index": "geog_idx", "index_used": True}
        for name in ("radius_5km", "bbox")
    },
    "concurrency": {"radius_5km": {str(c): {"tps": 10.0 * c, "p50": 1, "p95": 2, "p99": 3, "errors": 0, "count": 5}
                                   for c in (1, 4, 16, 64)}},
    "distribution": {
        "table": "vehicle_locations", "shard_count": 2,
        "shards": [{"shard": 1, "node": "a:1", "rows": 6, "bytes": 100}, {"shard": 2, "node": "b:1", "rows": 4,
                                                                          "bytes": 90}],
        "workers": [{"node": "a:1", "rows": 6, "bytes": 100, "shards": 1}, {"node": "b:1", "rows": 4, "bytes": 90,
                                                                            "shards": 1}],
        "skew": {"shard_rows_max_over_mean": 1.2}, "colocation": [],
    },
    "workers": {"radius_5km": {"coordinator": 5.0, "worker1 (any node)": 5.5, "worker1 (own shards)": 2.0}},
    "overhead": {"query": "radius_5km", "clients": 16, "pgbench_tps": 100.0, "runner_tps": 95.0,
                 "runner_over_pgbench": 0.95},
    "compare": {"datasets": {"uniform": {
        "skew": {"shard_rows_max_over_mean": 1.1},
        "latency": {"spatial (functions)": {"radius_5km": SUMMARY | {"tasks": 3, "rows": 10}},
                    "single node": {"radius_5km": SUMMARY | {"tasks": None, "rows": 10}}},
        "concurrency": {"spatial (functions)": {"radius_5km": {"16": {"tps": 50.0}}},
                        "single node": {"radius_5km": {"16": {"tps": 60.0}}}}}},
        "ratios": {"uniform: radius_5km p50, spatial functions / single node (target < 1.0)": 0.9}},
    "ha": {
        "drills": [{"scenario": "coordinator-leader-kill", "victim": "c0", "first_write_after": 19.5,
                    "writes_all_ok_after": 19.6, "recovered_after": 24.0, "acknowledged": 2000, "lost": 0,
                    "phases": {"during failure": {"write_success_pct": 53.4}}}],
        "timeline": {"title": "t", "seconds": [0, 1, 2], "ok": [5, 0, 5], "failed": [0, 3, 0], "kill_at": 1.0,
                     "recovered_at": 2.0},
    },
}


def test_every_report_file_is_written(tmp_path: Path) -> None:
    files = write_reports(RESULTS, tmp_path)
    for name in ("results.json", "report.md", "report.html", "latency.png", "throughput.png", "distribution.png",
                 "compare.png", "ha-timeline.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads(files["json"].read_text()) == RESULTS
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_markdown_lists_every_query_and_client_count() -> None:
    text = render_markdown(RESULTS)
    for needle in ("radius_5km", "bbox", "| radius_5km | 64 | 640.0 |", "coordinator-leader-kill", "x_geog_idx_102008",
                   "| radius_5km | 5.0 | 5.5 | 2.0 |", "| radius_5km | 16 | 100.0 | 95.0 | 0.95 |"):
        assert needle in text


def test_phase_success_rates_follow_the_seed_figure() -> None:
    attempts = [Attempt("write", 0, t, t + 0.01, ok) for t, ok in
                [(0.5, True), (1.5, True), (2.5, False), (3.5, True), (5.5, True)]]
    rates = phase_rates(attempts, kill_at=2.0, recovered_at=5.0)
    assert rates["baseline"]["write_success_pct"] == 100.0 and rates["baseline"]["writes"] == 2
    assert rates["during failure"]["write_success_pct"] == 50.0
    assert rates["after recovery"]["writes"] == 1 and rates["after recovery"]["reads"] == 0


def test_read_scaling_tables_show_leader_vs_standbys_lag_and_read_your_writes() -> None:
    run = {"tps": 100.0, "p50": 5.0, "errors": 0}
    reads = {
        "clients": 16, "duration_s": 10.0, "ro_session": {"on_standby": True, "use_secondary_nodes": "always"},
        "throughput": {"radius_5km": {"leader (rw)": run, "standbys (ro)": run | {"tps": 90.0}, "ro / rw": 0.9}},
        "staleness": {"seconds": 8.2, "failures": [],
                      "replication_lag": {"worker1": {"samples": 30, "bytes_p50": 4096, "bytes_max": 900000,
                                                      "replay_lag_ms_p50": 3.1, "replay_lag_ms_p99": 40.0,
                                                      "replay_lag_ms_max": 55.5}},
                      "read_your_writes": {"flush (default)": {"probes": 40, "not_visible_at_first_read": 7,
                                                               "wait_ms_p50": 2.0, "wait_ms_max": 30.0},
                                           "remote_apply": {"probes": 40, "not_visible_at_first_read": 0,
                                                            "wait_ms_p50": 1.0, "wait_ms_max": 2.0}}},
    }
    text = render_markdown({"meta": {}, "reads": reads})
    assert "## Reads at 16 clients: leader (rw) vs standbys (ro)" in text
    assert "| radius_5km | 100.0 | 90.0 | 0.9 | 5.0 | 5.0 | 0/0 |" in text
    assert "| worker1 | 30 | 4096 | 900000 | 3.1 | 40.0 | 55.5 |" in text
    assert "| flush (default) | 40 | 7 | 2.0 | 30.0 |" in text and "| remote_apply | 40 | 0 | 1.0 | 2.0 |" in text
    assert "Reads at" not in render_markdown({"meta": {}, "reads": {"skipped": "needs --harness"}})
