"""The defaults step's pure parts (benchmarks/defaults.py): settings text, DSN options, statements, ratios."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from benchmarks import defaults
from benchmarks.errors import BenchmarkError
from benchmarks.workload import COMPARE_QUERIES, DATA_TABLE


@pytest.mark.parametrize(("value", "unit", "text"), [
    ("4096", "kB", "4096kB"), ("524288", "8kB", "4194304kB"), ("on", None, "on"), ("2", "", "2"),
    ("16", "16MB", "256MB")])
def test_setting_text_says_what_a_set_takes(value: str, unit: str | None, text: str) -> None:
    assert defaults.setting_text(value, unit) == text


def test_with_options_appends_settings_after_the_dsns_own() -> None:
    dsn = "postgresql://postgres:secret@127.0.0.1:5432/citus?sslmode=disable&options=-c%20statement_timeout%3D0"
    out = defaults.with_options(dsn, {"jit": "on", "work_mem": "4096kB"})
    query = parse_qs(urlsplit(out).query)
    assert query["sslmode"] == ["disable"]
    assert query["options"] == ["-c statement_timeout=0 -c jit=on -c work_mem=4096kB"]
    assert out.startswith("postgresql://postgres:secret@127.0.0.1:5432/citus?")
    assert "+" not in out  # libpq does not decode + as a space in a URI


def test_with_options_refuses_a_keyword_dsn_without_showing_its_password() -> None:
    with pytest.raises(BenchmarkError, match="postgresql:// URL") as caught:
        defaults.with_options("host=x password=secret", {"jit": "on"})
    assert "secret" not in str(caught.value)


def test_alter_and_reset_system_end_with_a_reload() -> None:
    assert defaults.alter_system({"jit": "on", "work_mem": "4096kB"}) == [
        "ALTER SYSTEM SET jit = 'on'", "ALTER SYSTEM SET work_mem = '4096kB'", "SELECT pg_reload_conf()"]
    assert defaults.reset_system(["jit"]) == ["ALTER SYSTEM RESET jit", "SELECT pg_reload_conf()"]


def test_single_node_order_clusters_by_its_spatial_index_then_analyzes() -> None:
    assert defaults.single_node_order() == ["CLUSTER vehicle_locations USING vehicle_locations_geom_idx",
                                            "ANALYZE vehicle_locations"]


def test_pruned_query_reads_the_distributed_table_with_constant_keys() -> None:
    radius = next(q for q in COMPARE_QUERIES if q.name == "radius_5km")
    sql = defaults.pruned(radius).sql
    assert f"FROM {DATA_TABLE} WHERE spatial_key = ANY (vehicle_spatial_keys_within(" in sql
    assert sql.endswith("::geography, 5000)")
    with pytest.raises(BenchmarkError, match="no spatial predicate"):
        defaults.pruned(next(q for q in COMPARE_QUERIES if q.keys is None))


def _system(p50: float, tps: float) -> dict:
    return {"latency": {"radius_5km": {"p50": p50}}, "throughput": {"tps": tps}}


def test_ratios_compare_each_cluster_path_with_the_single_node_in_the_same_phase() -> None:
    datasets = {"uniform": {"skew": {"shard_rows_max_over_mean": 1.1}, "phases": {"tuned": {
        defaults.CLUSTER_PRUNED: _system(30.0, 15.0), defaults.CLUSTER_FUNCTION: _system(60.0, 10.0),
        defaults.SINGLE: _system(40.0, 20.0)}}}}
    out = defaults.ratios(datasets, 16)
    assert out["uniform, tuned: 5 km p50, cluster: pruned plain query / single node (target <= 0.75)"] == 0.75
    assert out["uniform, tuned: 5 km at 16 clients, cluster: vehicle_locations_within q/s / single node "
               "(target >= 0.75)"] == 0.5
    assert out["uniform: shard rows max / mean (target <= 2)"] == 1.1


def test_ratios_include_the_any_node_path_only_when_it_was_measured() -> None:
    systems = {defaults.CLUSTER_PRUNED: _system(30.0, 15.0), defaults.CLUSTER_FUNCTION: _system(60.0, 10.0),
               defaults.SINGLE: _system(40.0, 20.0)}
    without = defaults.ratios({"uniform": {"skew": {"shard_rows_max_over_mean": 1.0}, "phases": {"tuned": systems}}},
                              16)
    assert not any("any-node" in key for key in without)
    systems[defaults.CLUSTER_ANY_NODE] = _system(20.0, 18.0)
    out = defaults.ratios({"uniform": {"skew": {"shard_rows_max_over_mean": 1.0}, "phases": {"tuned": systems}}}, 16)
    assert out["uniform, tuned: 5 km p50, cluster: pruned plain query via any-node / single node "
               "(target <= 0.75)"] == 0.5
    assert out["uniform, tuned: 5 km at 16 clients, cluster: pruned plain query via any-node q/s / single node "
               "(target >= 0.75)"] == 0.9
