"""Spatial distribution on real Citus: rows land where sql/0002 says, and the pruning functions return exactly
the rows of the plain queries, everywhere on Earth (cell edges, the antimeridian, the poles)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator

import psycopg
import pytest

from benchmarks import steps, workload
from benchmarks.workload import DATA_COLUMNS, DATA_TABLE, Grid
from cluster.local.harness import Harness
from cluster.provision import provision, read_migrations
from cluster.provision.migrations import SettingChanged
from tests.integration.conftest import SQL_DIR, start_harness

pytestmark = [pytest.mark.citus, pytest.mark.slow]

POINT = "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)"


@pytest.fixture(scope="module")
def conn(shared_harness: Harness) -> Iterator[psycopg.Connection]:
    with psycopg.connect(shared_harness.dsn(), autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def grid(conn: psycopg.Connection) -> Grid:
    return Grid.read(conn)


def edge_point(grid: Grid, rng: random.Random, kind: int) -> tuple[float, float]:
    """0: on or a hair either side of a cell edge; 1: on or near the antimeridian; 2: at or near a pole;
    3: anywhere on Earth."""
    d = grid.cell_degrees
    if kind == 0:
        lon = round(-74.0 / d + rng.randint(0, 12)) * d + rng.choice((0.0, 1e-7, -1e-7, 1e-12))
        lat = round(40.7 / d + rng.randint(0, 12)) * d + rng.choice((0.0, 1e-7, -1e-7))
    elif kind == 1:
        lon = rng.choice((180.0, -180.0, 180 - rng.random() * 0.2, -180 + rng.random() * 0.2))
        lat = rng.uniform(-70, 70)
    elif kind == 2:
        lon, lat = rng.uniform(-180, 180), rng.choice((90.0, -90.0, 90 - rng.random() * 0.3, -90 + rng.random() * 0.3))
    else:
        lon, lat = rng.uniform(-180, 180), math.degrees(math.asin(rng.uniform(-1, 1)))
    return lon, lat


def copy_points(conn: psycopg.Connection, grid: Grid, points: list[tuple[float, float]]) -> None:
    """The bulk loader's path: COPY into the table with spatial_key from the Python mirror of the grid."""
    with conn.cursor() as cur, cur.copy(f"COPY {DATA_TABLE} ({DATA_COLUMNS}) FROM STDIN") as copy:
        for i, (lon, lat) in enumerate(points):
            x, y = f"{lon:.12f}", f"{lat:.12f}"
            copy.write(f"{i % 500}\tSRID=4326;POINT({x} {y})\t2026-11-25T00:00:00+00\tregion_north\t"
                       f"{grid.key(float(x), float(y))}\n")


def misplaced(conn: psycopg.Connection, by_space: bool = True) -> dict[str, int]:
    """Rows whose spatial_key is not the SQL function's, and (distributed by it) keys stored in a shard Citus
    would not route them to."""
    per_shard = conn.execute(
        f"SELECT shardid, result FROM run_command_on_shards('{DATA_TABLE}', $$SELECT json_build_object("
        "'wrong_key', count(*) FILTER (WHERE spatial_key <> vehicle_spatial_key(ST_X(location), ST_Y(location))), "
        "'keys', coalesce(json_agg(DISTINCT spatial_key), '[]'))::text FROM %s$$)").fetchall()
    wrong_key = wrong_shard = 0
    for shard, result in per_shard:
        data = json.loads(result)
        wrong_key += data["wrong_key"]
        for key in data["keys"] if by_space else []:
            routed = conn.execute("SELECT get_shard_id_for_distribution_column(%s, %s::bigint)",
                                  (DATA_TABLE, key)).fetchone()[0]
            wrong_shard += routed != shard
    return {"wrong_key": wrong_key, "wrong_shard": wrong_shard}


@pytest.fixture(scope="module")
def globe(conn: psycopg.Connection, grid: Grid) -> list[tuple[float, float]]:
    """~20k points: edges, antimeridian, poles, anywhere, and a dense patch around the seed's centre."""
    rng = random.Random(7)
    points = [edge_point(grid, rng, i % 4) for i in range(16_000)]
    points += [(workload.CENTRE[0] + rng.gauss(0, 0.05), workload.CENTRE[1] + rng.gauss(0, 0.05)) for _ in range(4000)]
    conn.execute(f"TRUNCATE {DATA_TABLE}")
    copy_points(conn, grid, points)
    conn.execute(f"ANALYZE {DATA_TABLE}")
    return points


def test_copy_through_the_loader_puts_every_row_in_its_shard(conn: psycopg.Connection, globe: list) -> None:
    assert conn.execute(f"SELECT count(*) FROM {DATA_TABLE}").fetchone()[0] == len(globe)
    assert misplaced(conn) == {"wrong_key": 0, "wrong_shard": 0}


def test_the_seeds_insert_unchanged_puts_rows_in_the_right_shards(conn: psycopg.Connection, globe: list) -> None:
    before = conn.execute(f"SELECT count(*) FROM {DATA_TABLE}").fetchone()[0]
    conn.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 5000})
    conn.execute("INSERT INTO vehicle_locations (vehicle_id, location, recorded_at, region_code) VALUES "
                 "(1, ST_SetSRID(ST_MakePoint(-180 + random() * 360, -90 + random() * 180), 4326), now(), 'x')")
    assert conn.execute(f"SELECT count(*) FROM {DATA_TABLE}").fetchone()[0] == before + 5001
    assert misplaced(conn) == {"wrong_key": 0, "wrong_shard": 0}


def random_centre(rng: random.Random, globe: list, grid: Grid) -> tuple[float, float]:
    if rng.random() < 0.5:  # near data, so most answers are not empty
        lon, lat = rng.choice(globe)
        lon, lat = lon + rng.gauss(0, 0.01), max(-90.0, min(90.0, lat + rng.gauss(0, 0.01)))
        return lon, lat
    return edge_point(grid, rng, rng.randrange(4))


def test_radius_function_returns_exactly_the_plain_querys_rows(conn: psycopg.Connection, globe: list,
                                                                grid: Grid) -> None:
    rng = random.Random(11)
    nonempty = 0
    for i in range(1000):
        lon, lat = random_centre(rng, globe, grid)
        radius = 10 ** rng.uniform(1, 5)  # 10 m .. 100 km
        args = {"lon": lon, "lat": lat, "r": radius}
        pruned = {r[0] for r in conn.execute("SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, %(r)s)", args)}
        plain = {r[0] for r in conn.execute(
            f"SELECT id FROM vehicle_locations WHERE ST_DWithin(location::geography, {POINT}::geography, %(r)s)",
            args)}
        assert pruned == plain, f"query {i}: centre ({lon!r}, {lat!r}), radius {radius!r} m"
        nonempty += bool(plain)
    assert nonempty > 300  # the comparison saw real answers, not just empty sets


def test_box_function_returns_exactly_the_plain_querys_rows(conn: psycopg.Connection, globe: list,
                                                             grid: Grid) -> None:
    rng = random.Random(12)
    for i in range(300):
        lon, lat = random_centre(rng, globe, grid)
        w, h = 10 ** rng.uniform(-4, 0.5), 10 ** rng.uniform(-4, 0.5)
        box = {"x0": lon - w, "y0": lat - h, "x1": lon + w, "y1": lat + h}
        pruned = {r[0] for r in conn.execute(
            "SELECT id FROM vehicle_locations_in_box(%(x0)s, %(y0)s, %(x1)s, %(y1)s)", box)}
        plain = {r[0] for r in conn.execute(
            "SELECT id FROM vehicle_locations WHERE ST_Within(location, "
            "ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326))", box)}
        assert pruned == plain, f"box {i}: {box}"


def test_nearest_function_returns_exactly_the_k_nearest(conn: psycopg.Connection, globe: list, grid: Grid) -> None:
    rng = random.Random(13)
    for i in range(100):
        lon, lat = random_centre(rng, globe, grid)
        args = {"lon": lon, "lat": lat, "k": rng.randint(1, 20)}
        pruned = [r[0] for r in conn.execute("SELECT id FROM vehicle_locations_nearest(%(lon)s, %(lat)s, %(k)s)", args)]
        plain = [r[0] for r in conn.execute(
            f"SELECT id FROM vehicle_locations ORDER BY ST_Distance(location::geography, {POINT}::geography), id "
            "LIMIT %(k)s", args)]
        assert pruned == plain, f"query {i}: {args}"


def test_the_5km_radius_query_touches_fewer_shards_than_there_are(conn: psycopg.Connection,
                                                                   harness: Harness) -> None:
    query = next(q for q in workload.COMPARE_QUERIES if q.name == "radius_5km").query(through_function=True)
    evidence = steps.explain(conn, query.evidence, {})
    shards = conn.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = %s::regclass",
                          (DATA_TABLE,)).fetchone()[0]
    assert shards == harness.config.citus.shard_count
    assert evidence["tasks"] < shards, evidence


def test_changing_the_grid_of_a_built_schema_is_refused(conn: psycopg.Connection, harness: Harness) -> None:
    settings = {**harness.target.schema_settings, "cell_degrees": "0.1"}
    changed = dataclasses.replace(harness.target, schema_settings=settings)
    with pytest.raises(SettingChanged, match=r"citus\.distribution\.cellDegrees: the schema was built with"):
        provision(changed, read_migrations(SQL_DIR))
    assert conn.execute("SELECT value FROM citus_cluster_settings WHERE name = 'cell_degrees'").fetchone()[0] == (
        harness.target.schema_settings["cell_degrees"])


def test_the_by_vehicle_strategy_keeps_tracks_on_one_shard_and_the_functions_exact() -> None:
    """The alternative strategy, on its own cluster: same view, same functions, distributed by vehicle_id."""
    cluster = start_harness({"citus": {"distribution": {"strategy": "vehicle"}}})
    try:
        provision(cluster.target, read_migrations(SQL_DIR))
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            column = conn.execute("SELECT distribution_column FROM citus_tables WHERE table_name = %s::regclass",
                                  (DATA_TABLE,)).fetchone()[0]
            assert column == "vehicle_id"
            conn.execute(workload.SEED_INSERT.format(table=workload.TABLE), {"rows": 5000})
            assert misplaced(conn, by_space=False) == {"wrong_key": 0, "wrong_shard": 0}
            track = workload.Query("track", "SELECT * FROM vehicle_locations_data WHERE vehicle_id = 42", None, "")
            assert steps.explain(conn, track.sql, {})["tasks"] == 1
            args = {"lon": workload.CENTRE[0], "lat": workload.CENTRE[1], "r": 5000.0}
            pruned = {r[0] for r in conn.execute("SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, %(r)s)",
                                                 args)}
            plain = {r[0] for r in conn.execute(
                f"SELECT id FROM vehicle_locations WHERE ST_DWithin(location::geography, {POINT}::geography, %(r)s)",
                args)}
            assert pruned == plain and plain
    finally:
        cluster.down()
