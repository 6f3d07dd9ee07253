"""Provisioning against real processes started from the rendered files (cluster/local)."""

from __future__ import annotations

import psycopg
import pytest

from benchmarks import workload
from cluster.local.harness import Harness
from cluster.provision import (
    ClusterNotHealthy,
    Migration,
    ProvisionError,
    SchemaDrift,
    check,
    drain,
    provision,
    read_migrations,
    retire,
    wait_healthy,
)
from cluster.provision import citus as citus_sql
from cluster.provision import migrations as schema
from cluster.provision.provider import ProvisioningProvider
from tests.integration.conftest import SQL_DIR

pytestmark = pytest.mark.slow

SEED_INSERT = workload.SEED_INSERT.format(table=workload.TABLE)  # the seed's own INSERT ... SELECT
# Writing from any node: the view's INSERT rule lives on the coordinator only (Citus does not propagate rules),
# so elsewhere rows go to the table with spatial_key filled by the same function.
DATA_INSERT = (
    "INSERT INTO vehicle_locations_data (vehicle_id, location, recorded_at, region_code, spatial_key) "
    "SELECT 1, p, now(), 'region_north', vehicle_spatial_key(ST_X(p), ST_Y(p)) "
    "FROM (SELECT ST_SetSRID(ST_MakePoint(-73.9 + g / 1e4, 40.8), 4326) AS p FROM generate_series(1, %(rows)s) g) s"
)


def test_health_wait_succeeds_on_a_healthy_cluster(harness: Harness) -> None:
    report = wait_healthy(harness.target, timeout=60)
    assert sorted(report.leaders) == list(range(len(harness.plan.groups)))
    assert report.problems == []


def test_health_names_the_member_that_is_down(harness: Harness) -> None:
    stopped = next(m.name for m in harness.plan.groups[1] if m.name != harness.leader(1))  # a standby
    harness.stop_member(stopped)  # the harness fixture starts it again after the test
    report = check(harness.target)
    assert [p for p in report.problems if p.startswith(f"{stopped} (group 1): Patroni REST unreachable")]
    assert len(report.problems) == 1, report.problems
    with pytest.raises(ClusterNotHealthy, match=stopped) as error:
        wait_healthy(harness.target, timeout=3)
    assert "not healthy after 3 s" in str(error.value)


def test_migrations_apply_once_skip_when_applied_and_report_drift(harness: Harness) -> None:
    """Plain PostgreSQL is enough for the bookkeeping, so this runs with or without Citus."""
    with psycopg.connect(harness.dsn(database="postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migration_test")
        admin.execute("CREATE DATABASE migration_test")
    files = [
        Migration("0001_table.sql", "CREATE TABLE seen (n int);\n-- a note; with a semicolon\n"),
        Migration("0002_row.sql", "INSERT INTO seen VALUES (1); INSERT INTO seen VALUES (2);"),
    ]
    with psycopg.connect(harness.dsn(database="migration_test"), autocommit=True) as conn:
        assert schema.apply(conn, files) == ["0001_table.sql", "0002_row.sql"]
        assert schema.apply(conn, files) == []
        assert conn.execute("SELECT count(*) FROM seen").fetchone() == (2,)
        edited = [files[0], Migration("0002_row.sql", "INSERT INTO seen VALUES (3);")]
        with pytest.raises(SchemaDrift, match="0002_row.sql: applied with checksum"):
            schema.apply(conn, edited)
        assert conn.execute("SELECT count(*) FROM seen").fetchone() == (2,)
        broken = [*files, Migration("0003_bad.sql", "CREATE TABLE half (n int); SELECT no_such_function();")]
        with pytest.raises(psycopg.errors.UndefinedFunction):
            schema.apply(conn, broken)
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)  # nothing half-made
        assert "0003_bad.sql" not in schema.applied(conn)


@pytest.mark.citus
def test_provision_registers_every_group_and_applies_the_schema_once(harness: Harness) -> None:
    first = provision(harness.target, read_migrations(SQL_DIR))
    groups = {n["group"] for n in first.nodes if n["role"] == "primary"}
    assert groups == set(range(len(harness.plan.groups)))
    names = [m.name for m in read_migrations(SQL_DIR)]
    assert first.applied == names
    with citus_sql.connect(harness.dsn()) as conn:
        row = conn.execute(
            "SELECT citus_table_type, distribution_column, shard_count FROM citus_tables "
            "WHERE table_name = 'vehicle_locations_data'::regclass"
        ).fetchone()
        column = {"spatial": "spatial_key", "vehicle": "vehicle_id"}[harness.config.citus.distribution.strategy]
        assert row == ("distributed", column, harness.config.citus.shard_count)
        secondaries = conn.execute("SELECT count(*) FROM pg_dist_node WHERE noderole = 'secondary'").fetchone()
        assert secondaries == (len(harness.plan.members) - len(harness.plan.groups),)
    again = provision(harness.target, read_migrations(SQL_DIR))
    assert again.newly_applied == [] and again.applied == names and again.registered == []


@pytest.mark.citus
def test_an_edited_applied_file_is_drift(harness: Harness) -> None:
    provision(harness.target, read_migrations(SQL_DIR))
    files = read_migrations(SQL_DIR)
    files[0] = Migration(files[0].name, files[0].sql + "\n-- edited\n")
    with pytest.raises(SchemaDrift, match=files[0].name):
        provision(harness.target, files)


def rows_per_group(conn: psycopg.Connection) -> dict[int, int]:
    rows = conn.execute(
        "SELECT p.groupid, sum(r.result::bigint) "
        "FROM run_command_on_shards('vehicle_locations_data', 'SELECT count(*) FROM %s') r "
        "JOIN pg_dist_placement p USING (shardid) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {int(group): int(count) for group, count in rows}


def total_rows(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM vehicle_locations").fetchone()[0])


@pytest.mark.citus
def test_rows_land_on_every_worker_group_and_survive_scale_out_and_in(harness: Harness) -> None:
    provision(harness.target, read_migrations(SQL_DIR))
    with citus_sql.connect(harness.dsn()) as conn:
        conn.execute("TRUNCATE vehicle_locations_data")
        conn.execute(SEED_INSERT, {"rows": 100_000})
        spread = rows_per_group(conn)
        assert set(spread) == set(harness.target.worker_groups) and all(spread.values()), spread
        assert sum(spread.values()) == total_rows(conn) == 100_000

    # Scale out: a new group joins; provisioning rebalances shards onto it.
    new_group = harness.add_group()
    grown = provision(harness.target, read_migrations(SQL_DIR), rebalance=True)
    assert grown.rebalance.endswith("finished"), grown.rebalance
    with citus_sql.connect(harness.dsn()) as conn:
        spread = rows_per_group(conn)
        assert spread.get(new_group, 0) > 0, spread
        assert total_rows(conn) == 100_000

    # Scale in: drain first, then stop the members, then unregister.
    before = harness.target
    with pytest.raises(ProvisionError, match="no worker group would remain"):
        drain(before, before.worker_groups)
    moved = drain(before, [new_group])
    assert moved[new_group] > 0
    harness.remove_last_group()
    retire(harness.target, [new_group], settle=3)
    with citus_sql.connect(harness.dsn()) as conn:
        assert new_group not in {row.group for row in citus_sql.nodes(conn)}
        assert new_group not in rows_per_group(conn)
        assert total_rows(conn) == 100_000


@pytest.mark.citus
def test_provider_create_diff_update_against_the_cluster(harness: Harness) -> None:
    files = read_migrations(SQL_DIR)
    props = {"target": harness.target.to_dict(), "migrations": [m.to_dict() for m in files]}
    provider = ProvisioningProvider()
    created = provider.create(props)
    assert created.outs["applied_migrations"] == [m.name for m in files]
    assert {n["group"] for n in created.outs["nodes"]} == set(harness.target.groups)
    with citus_sql.connect(harness.dsn()) as conn:
        placements = conn.execute("SELECT count(*) FROM pg_dist_placement").fetchone()[0]
    assert sum(created.outs["shard_counts"].values()) == placements  # one per shard: secondaries not counted
    assert not provider.diff(created.id, created.outs, props).changes

    extra = Migration("9999_test_note.sql", "CREATE TABLE provider_note (n int);")
    news = {**props, "migrations": [*props["migrations"], extra.to_dict()]}
    assert provider.diff(created.id, created.outs, news).changes
    updated = provider.update(created.id, created.outs, news)
    assert extra.name in updated.outs["applied_migrations"]  # the fixture drops its table and record after


@pytest.mark.citus
def test_any_node_listener_serves_reads_and_dml_from_every_leader(harness: Harness) -> None:
    provision(harness.target, read_migrations(SQL_DIR))
    dsn = harness.dsn("any-node")
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(len(harness.plan.groups))]
    try:
        ports = {conn.execute("SELECT inet_server_port()").fetchone()[0] for conn in connections}
        leaders = {harness.member(harness.leader(g)).postgres.port for g in range(len(harness.plan.groups))}
        assert len(ports) > 1 and ports <= leaders  # leastconn spread the open sessions over the leaders
        for conn in connections:
            before = total_rows(conn)
            conn.execute(DATA_INSERT, {"rows": 10})
            assert total_rows(conn) == before + 10
        coordinator_port = leaders_port(harness, 0)
        port_of = {conn: conn.execute("SELECT inet_server_port()").fetchone()[0] for conn in connections}
        worker = next(conn for conn, port in port_of.items() if port != coordinator_port)
        with pytest.raises(psycopg.Error, match="not allowed on this node"):
            worker.execute("ALTER TABLE vehicle_locations_data ADD COLUMN speed real")  # distributed DDL: rw only
    finally:
        for conn in connections:
            conn.close()


def leaders_port(harness: Harness, group: int) -> int:
    return harness.member(harness.leader(group)).postgres.port


@pytest.mark.citus
def test_provision_command_by_hand_on_the_harness(harness: Harness, capsys: pytest.CaptureFixture) -> None:
    from cluster.__main__ import main

    assert main(["provision", "--harness", str(harness.base_dir)]) == 0
    assert main(["provision", "--harness", str(harness.base_dir), "--check"]) == 0
    out = capsys.readouterr().out
    assert "healthy; Citus 13" in out and "pending: none" in out
    assert harness.passwords.superuser not in out
