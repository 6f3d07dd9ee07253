"""The scale-out benchmark's pure parts (benchmarks/scale.py): what it runs, ratios and verdicts against the
single node, the text plots and the report. No cluster is started."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import scale
from cluster.errors import UsageError


def run(groups: int, ingest: float, radius: float, tps: float, tps_any: float | None = None,
        rows: int = 1_000_000) -> dict[str, Any]:
    result: dict[str, Any] = {
        "groups": groups, "rows": rows, "cpu_per_host": 0.3, "quota_us": 30000, "period_us": 100000,
        "machine": {"cpus": 2, "cpu_model": "test"},
        "load": {"rows_per_s": ingest},
        "queries": {"radius_5km": {"summary": {"p50": radius}}, "bbox": {"summary": {"p50": 10.0}},
                    "knn_10": {"summary": {"p50": 2.0}}},
        "throughput": {"read-write": {"tps": tps}},
        "throttled": {"read-write": {"h-coordinator-0": 0.97}},
    }
    if tps_any is not None:
        result["throughput"]["any-node"] = {"tps": tps_any}
        result["queries_any_node"] = {"radius_5km": {"summary": {"p50": radius * 1.1}}}
    return result


def runs(*found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {scale.label(r["groups"], r["rows"]): r for r in found}


def test_groups_parse_and_refuse() -> None:
    assert scale.parse_groups("0,1,2,4,2") == [0, 1, 2, 4]
    for bad in ("", "a", "-1"):
        with pytest.raises(UsageError, match="--groups"):
            scale.parse_groups(bad)


def test_labels_and_hosts() -> None:
    assert scale.label(0, 1_000_000) == "single-1m" and scale.label(4, 5_000_000) == "groups4-5m"
    assert scale.label(2, 100_000) == "groups2-100k"
    assert scale.hosts_of(0) == 1 and scale.hosts_of(4) == 5
    assert scale.system_name(1) == "1 worker group" and scale.system_name(4) == "4 worker groups"


def test_cluster_overrides_one_member_per_group() -> None:
    o = scale.cluster_overrides(4, "192MB")
    assert o["workers"] == {"groups": 4, "members": 1} and o["coordinator"] == {"members": 1}
    assert o["etcd"] == {"members": 1} and o["postgresql"]["parameters"]["shared_buffers"] == "192MB"
    assert scale.cluster_overrides(0, "192MB")["workers"]["groups"] == 1  # the single node's harness shape


def test_ratios_against_the_single_node_of_the_same_rows() -> None:
    r = scale.ratios(runs(run(0, 10_000, 100.0, 10.0), run(4, 30_000, 30.0, 20.0, 27.0),
                          run(4, 5_000, 300.0, 5.0, rows=5_000_000)), 1_000_000)
    assert list(r) == [4]
    assert r[4]["ingest"] == 3.0 and r[4]["radius_p50"] == 0.3 and r[4]["tps"] == 2.0 and r[4]["tps_any"] == 2.7
    assert r[4]["radius_p50_any"] == 0.33
    assert scale.ratios(runs(run(4, 1, 1, 1)), 1_000_000) == {}  # no single node: nothing to compare


def test_verdicts_say_met_and_missed_and_which_endpoint() -> None:
    v = scale.verdicts({"tps": 2.0, "tps_any": 2.7, "ingest": 3.0, "radius_p50": 0.5})
    assert v[0] == ("16-client 5 km q/s (any-node)", ">= 2.5x", 2.7, "met")
    assert v[1][3] == "met" and v[2] == ("5 km radius p50 (read-write)", "<= 0.4x", 0.5, "missed")
    # latency: the lower of the two endpoints, named
    v = scale.verdicts({"tps": 2.0, "ingest": 3.0, "radius_p50": 0.45, "radius_p50_any": 0.35})
    assert v[2] == ("5 km radius p50 (any-node)", "<= 0.4x", 0.35, "met")
    v = scale.verdicts({"tps": 2.0, "ingest": 3.0, "radius_p50": 0.3, "radius_p50_any": 0.35})
    assert v[2] == ("5 km radius p50 (read-write)", "<= 0.4x", 0.3, "met")
    assert scale.verdicts({"tps": None, "tps_any": None})[0][3] == "not measured"


def test_bar_chart_scales_to_the_largest_and_marks_the_target() -> None:
    chart = scale.bar_chart("t", [("a", 1.0), ("b", 2.0), ("c", None)], width=10, mark=2.5)
    lines = chart.splitlines()
    assert lines[0] == "t"
    assert lines[1] == "  a ####     | 1"
    assert lines[2] == "  b ######## | 2"
    assert lines[3].endswith(" -") and "'|' / '+' = target 2.5" in lines[4]


def test_throttled_share_is_the_delta_of_periods() -> None:
    before = {"c": (100, 10), "w": (100, 0)}
    assert scale.throttled_share(before, {"c": (200, 100), "w": (200, 5), "n": (0, 0)}) == {
        "c": 0.9, "w": 0.05, "n": 0.0}


def test_report_has_tables_targets_plots_and_the_data_curve() -> None:
    text = scale.render(runs(run(0, 10_000, 100.0, 10.0), run(1, 9_000, 120.0, 8.0, 9.0),
                             run(4, 30_000, 30.0, 20.0, 27.0),
                             run(0, 9_000, 500.0, 2.0, rows=5_000_000), run(4, 25_000, 150.0, 5.0, 8.0,
                                                                             rows=5_000_000)))
    assert "# Scale-out curve" in text and "0.3 core" in text and "30000 us per 100000 us" in text
    assert "## 1,000,000 rows" in text and "## 5,000,000 rows" in text
    assert "| 4 worker groups | 5 (1.5) | 30,000 | 30.0 |" in text
    assert "| 16-client 5 km q/s (any-node) | >= 2.5x | 2.7 | met |" in text
    assert "| 5 km radius p50 (read-write) | <= 0.4x | 0.3 | met |" in text
    assert "16-client 5 km throughput, × single node (read-write endpoint)" in text
    assert "| 4 worker groups | read-write | h-coordinator-0 | 97% |" in text
    assert "## Data curve" in text and "| single node | 5,000,000 |" in text


def test_report_without_runs() -> None:
    assert "No runs yet" in scale.render({})


def test_written_report_merges_every_run_and_ends_with_the_notes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    (tmp_path / "runs").mkdir()
    for r in (run(0, 10_000, 100.0, 10.0), run(4, 30_000, 30.0, 20.0, 27.0)):
        (tmp_path / "runs" / f"{scale.label(r['groups'], r['rows'])}.json").write_text(json.dumps(r))
    (tmp_path / "notes.md").write_text("## Not measured: something\n")
    text = scale.write_report(tmp_path).read_text()
    assert "| 4 worker groups | 5 (1.5) |" in text and text.endswith("## Not measured: something\n")


def test_runs_without_tls_are_marked() -> None:
    assert scale.system_name(4, tls=False) == "4 worker groups (no TLS)"
    text = scale.render(runs(run(0, 10_000, 100.0, 10.0), run(4, 30_000, 30.0, 20.0, 27.0) | {"tls": False}))
    assert "| 4 worker groups (no TLS) |" in text


def test_load_via_parse_and_streams() -> None:
    assert scale.parse_load_via("rw") == ["read-write"]
    assert scale.parse_load_via("any-node,rw") == ["any-node", "read-write"]
    for bad in ("", "coordinator", "rw,ro"):
        with pytest.raises(UsageError, match="--load-via"):
            scale.parse_load_via(bad)
    assert scale.load_streams("read-write", 4, parallel=4, any_node_streams=0) == 4
    assert scale.load_streams("any-node", 4, parallel=4, any_node_streams=0) == 5  # coordinator + 4 worker leaders
    assert scale.load_streams("any-node", 4, parallel=4, any_node_streams=8) == 8


def with_loads(result: dict[str, Any], rw: float, any_node: float, retries: int = 0) -> dict[str, Any]:
    failed = [{"stream": 1, "batch": 3, "first_row": 500_000, "attempt": 1, "error": "failed to COPY to shard 1"}]
    result["loads"] = {"read-write": {"rows_per_s": rw, "retries": failed * retries},
                       "any-node": {"rows_per_s": any_node, "retries": []}}
    result["load"] = result["loads"]["read-write"]
    return result


def test_ingest_through_any_node_is_set_against_the_single_node_and_judged() -> None:
    r = scale.ratios(runs(run(0, 10_000, 100.0, 10.0), with_loads(run(4, 0, 30.0, 20.0, 27.0), 24_000, 31_000)),
                     1_000_000)
    assert r[4]["ingest"] == 2.4 and r[4]["ingest_any"] == 3.1
    assert scale.verdicts(r[4])[1] == ("ingest rows/s (any-node)", ">= 2.5x", 3.1, "met")
    old = scale.summary(run(4, 30_000, 30.0, 20.0))  # a run from before --load-via: its one load was read-write
    assert old["ingest"] == 30_000 and old["ingest_any"] is None and old["copy_retries"] is None


def test_report_shows_any_node_ingest_and_the_retried_batches() -> None:
    text = scale.render(runs(run(0, 10_000, 100.0, 10.0),
                             with_loads(run(4, 0, 30.0, 20.0, 27.0), 24_000, 31_000, retries=2)))
    assert "ingest rows/s, × single node (any-node endpoint)" in text
    assert "| 20.0 | 27.0 | 31,000 | 2 |" in text  # q/s rw, q/s any-node, ingest any-node, batches retried
    assert "| 4 worker groups | read-write | 1 | 3 | 1 | failed to COPY to shard 1 |" in text
