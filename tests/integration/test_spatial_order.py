"""sql/0005's vehicle_locations_order_by_location() on real Citus: every shard rewritten in the order of its
spatial index, rows unchanged, the same physical order on the standbys (by WAL), and refused where it must be
(a standby, a role that is not the superuser)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import psycopg
import pytest

from benchmarks import workload
from benchmarks.workload import DATA_TABLE, Grid
from cluster.local.harness import Harness
from tests.integration.test_spatial import copy_points

pytestmark = [pytest.mark.citus, pytest.mark.slow]

ROWS = 20_000
# Median distance (degrees) between rows that sit next to each other on disk, per shard: small when the
# physical order follows space, about the shard's extent when it follows arrival.
NEIGHBOUR_GAP = ("SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0) FROM (SELECT "
                 "ST_Distance(location, lag(location) OVER (ORDER BY ctid)) AS d FROM %s) x WHERE d IS NOT NULL")
ROWS_SQL = f"SELECT id, vehicle_id, location::text, recorded_at, region_code, spatial_key FROM {DATA_TABLE} ORDER BY id"


@pytest.fixture
def loaded(harness: Harness) -> Iterator[psycopg.Connection]:
    """ROWS points of the seed's square in random (arrival) order."""
    with psycopg.connect(harness.dsn(), autocommit=True) as conn:
        grid = Grid.read(conn)
        rng = random.Random(16)
        points = [(workload.LON + rng.random() * workload.SIZE, workload.LAT + rng.random() * workload.SIZE)
                  for _ in range(ROWS)]
        conn.execute(f"TRUNCATE {DATA_TABLE}")
        copy_points(conn, grid, points)
        conn.execute(f"ANALYZE {DATA_TABLE}")
        yield conn
        conn.execute(f"TRUNCATE {DATA_TABLE}")


def gaps(conn: psycopg.Connection) -> dict[int, float]:
    return {shard: float(result) for shard, result in conn.execute(
        f"SELECT shardid, result FROM run_command_on_shards('{DATA_TABLE}', %s)", (NEIGHBOUR_GAP,)).fetchall()}


def test_orders_every_shard_by_its_spatial_index_and_keeps_every_row(loaded: psycopg.Connection) -> None:
    conn = loaded
    rows_before = conn.execute(ROWS_SQL).fetchall()
    before = gaps(conn)
    assert conn.execute("SELECT vehicle_locations_order_by_location()").fetchone()[0] == len(before)
    after = gaps(conn)
    assert conn.execute(ROWS_SQL).fetchall() == rows_before  # same rows, same values, same ids
    # A shard's cells are scattered over the square (the tile deals neighbouring cells to other shards), and a
    # GiST index orders by its tree, not a curve: the gap shrinks 2.4-8.5x per shard here, not to nothing.
    shrunk = {shard: round(before[shard] / max(gap, 1e-12), 1) for shard, gap in after.items()}
    assert min(shrunk.values()) > 2, f"neighbours on disk closer by only {shrunk} (before/after, per shard)"
    clustered = conn.execute(
        f"SELECT result FROM run_command_on_shards('{DATA_TABLE}', 'SELECT string_agg(indexrelid::regclass::text, "
        "'','') FROM pg_index WHERE indrelid = ''%s''::regclass AND indisclustered')").fetchall()
    assert all(r[0] and "geom_idx" in r[0] for r in clustered), clustered
    # Ordering an ordered table again is harmless (the hint on failure says so).
    assert conn.execute("SELECT vehicle_locations_order_by_location()").fetchone()[0] == len(before)
    assert conn.execute(ROWS_SQL).fetchall() == rows_before


def physical_order(dsn: str) -> dict[str, str]:
    """Each shard of DATA_TABLE on this worker member: a digest of its ids in physical (ctid) order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET citus.override_table_visibility = off")  # shards are hidden from pg_class otherwise
        shards = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s ORDER BY 1",
            (f"^{DATA_TABLE}_[0-9]+$",)).fetchall()]
        return {s: conn.execute(f"SELECT md5(string_agg(id::text, ',' ORDER BY ctid)) FROM {s}").fetchone()[0]
                for s in shards}


def test_standbys_get_the_same_physical_order_by_wal(harness: Harness, loaded: psycopg.Connection) -> None:
    loaded.execute("SELECT vehicle_locations_order_by_location()")
    leader = harness.leader(1)
    standby = next(m.name for m in harness.plan.groups[1] if m.name != leader)
    with psycopg.connect(harness.member_dsn(leader), autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + 60
    with psycopg.connect(harness.member_dsn(standby), autocommit=True) as conn:
        while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"{standby} did not replay up to {lsn} within 60 s"
            time.sleep(0.2)
    on_leader = physical_order(harness.member_dsn(leader))
    assert on_leader, f"no shard of {DATA_TABLE} found on {leader}"
    assert physical_order(harness.member_dsn(standby)) == on_leader


def test_refused_on_a_standby_and_to_other_roles(harness: Harness) -> None:
    standby = next(m.name for m in harness.plan.groups[0] if m.name != harness.leader(0))
    with psycopg.connect(harness.member_dsn(standby), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="standby"):
            conn.execute("SELECT vehicle_locations_order_by_location()")
    app = harness.plan.dsn("read-write", harness.passwords.app, harness.config.citus.app_user)
    with psycopg.connect(app, autocommit=True, prepare_threshold=None) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT vehicle_locations_order_by_location()")
