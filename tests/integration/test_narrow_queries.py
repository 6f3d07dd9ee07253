"""sql/0003's narrow query functions and the plain pruned query on real Citus: the same ids as 0002's functions,
pruned to exactly the shards their keys name, callable by the application role; and why they are not inlinable
SQL functions (Citus refuses those over distributed tables)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import psycopg
import pytest

from benchmarks import steps, workload
from benchmarks.workload import DATA_TABLE, Grid
from cluster.local.harness import Harness
from tests.integration.test_spatial import copy_points, edge_point

pytestmark = [pytest.mark.citus, pytest.mark.slow]

LON, LAT = workload.CENTRE


@pytest.fixture(scope="module")
def conn(shared_harness: Harness) -> Iterator[psycopg.Connection]:
    with psycopg.connect(shared_harness.dsn(), autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def points(conn: psycopg.Connection) -> list[tuple[float, float]]:
    """~12k points: edges, antimeridian, poles, anywhere, and a dense patch around the seed's centre."""
    grid = Grid.read(conn)
    rng = random.Random(16)
    found = [edge_point(grid, rng, i % 4) for i in range(8000)]
    found += [(LON + rng.gauss(0, 0.05), LAT + rng.gauss(0, 0.05)) for _ in range(4000)]
    conn.execute(f"TRUNCATE {DATA_TABLE}")
    copy_points(conn, grid, found)
    conn.execute(f"ANALYZE {DATA_TABLE}")
    return found


def centre(rng: random.Random, points: list[tuple[float, float]]) -> tuple[float, float]:
    lon, lat = rng.choice(points)
    return lon + rng.gauss(0, 0.01), max(-90.0, min(90.0, lat + rng.gauss(0, 0.01)))


def ids(conn: psycopg.Connection, query: str, args: dict) -> set[int]:
    return {r[0] for r in conn.execute(query, args)}


def shards_of(conn: psycopg.Connection, keys_sql: str, args: dict) -> int:
    """How many shards the distribution values `keys_sql` names live on (what a pruned plan must touch)."""
    return conn.execute(
        f"SELECT count(DISTINCT get_shard_id_for_distribution_column('{DATA_TABLE}', k)) FROM unnest({keys_sql}) k",
        args).fetchone()[0]


PLAIN_WITHIN = ("SELECT id FROM vehicle_locations_data WHERE spatial_key = ANY (vehicle_spatial_keys_within("
                "{lon}, {lat}, {r})) AND ST_DWithin(location::geography, ST_SetSRID(ST_MakePoint({lon}, {lat}), "
                "4326)::geography, {r})")
PLAIN_WITHIN_EVIDENCE = PLAIN_WITHIN.format(lon="%(lon)s", lat="%(lat)s", r="%(r)s")
PLAIN_BOX_EVIDENCE = ("SELECT id FROM vehicle_locations_data WHERE spatial_key = ANY (vehicle_spatial_keys("
                      "%(x0)s, %(y0)s, %(x1)s, %(y1)s)) AND ST_Within(location, "
                      "ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326))")


def test_vehicle_ids_within_returns_the_ids_of_vehicle_locations_within(conn: psycopg.Connection,
                                                                         points: list) -> None:
    rng = random.Random(21)
    nonempty = 0
    for i in range(300):
        lon, lat = centre(rng, points)
        args = {"lon": lon, "lat": lat, "r": 10 ** rng.uniform(1, 5)}
        narrow = ids(conn, "SELECT * FROM vehicle_ids_within(%(lon)s, %(lat)s, %(r)s)", args)
        assert narrow == ids(conn, "SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, %(r)s)", args), (
            f"query {i}: {args}")
        nonempty += bool(narrow)
    assert nonempty > 100


def test_vehicle_ids_in_box_returns_the_ids_of_vehicle_locations_in_box(conn: psycopg.Connection,
                                                                       points: list) -> None:
    rng = random.Random(22)
    for i in range(150):
        lon, lat = centre(rng, points)
        w, h = 10 ** rng.uniform(-4, 0.5), 10 ** rng.uniform(-4, 0.5)
        box = {"x0": lon - w, "y0": lat - h, "x1": lon + w, "y1": lat + h}
        assert ids(conn, "SELECT * FROM vehicle_ids_in_box(%(x0)s, %(y0)s, %(x1)s, %(y1)s)", box) == ids(
            conn, "SELECT id FROM vehicle_locations_in_box(%(x0)s, %(y0)s, %(x1)s, %(y1)s)", box), f"box {i}: {box}"


def test_the_documented_plain_query_returns_the_functions_ids(conn: psycopg.Connection, points: list) -> None:
    """The README's path without any function scan: literal arguments, folded into constants before Citus plans."""
    rng = random.Random(23)
    for i in range(100):
        lon, lat = centre(rng, points)
        r = round(10 ** rng.uniform(1, 5), 3)
        plain = ids(conn, PLAIN_WITHIN.format(lon=repr(lon), lat=repr(lat), r=r), {})
        assert plain == ids(conn, "SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, %(r)s)",
                            {"lon": lon, "lat": lat, "r": r}), f"query {i}"


@pytest.mark.parametrize("metres", [500, 5000])
def test_the_radius_paths_touch_exactly_the_shards_of_their_keys(conn: psycopg.Connection, points: list,
                                                                 harness: Harness, metres: int) -> None:
    """vehicle_ids_within runs PLAIN_WITHIN's text with the keys as constants (a function call hides its plan,
    so the plain query is the evidence, as in test_spatial.py); the plain query EXPLAINs itself."""
    args = {"lon": LON, "lat": LAT, "r": metres}
    expected = shards_of(conn, "vehicle_spatial_keys_within(%(lon)s, %(lat)s, %(r)s)", args)
    assert steps.explain(conn, PLAIN_WITHIN_EVIDENCE, args)["tasks"] == expected
    literal = PLAIN_WITHIN.format(lon=LON, lat=LAT, r=metres)
    assert steps.explain(conn, literal, {})["tasks"] == expected < harness.config.citus.shard_count
    if metres == 500:
        assert expected == 1


def test_the_box_path_touches_exactly_the_shards_of_its_keys(conn: psycopg.Connection, points: list,
                                                             harness: Harness) -> None:
    box = {"x0": -74.0, "y0": 40.7, "x1": -73.99, "y1": 40.71}
    expected = shards_of(conn, "vehicle_spatial_keys(%(x0)s, %(y0)s, %(x1)s, %(y1)s)", box)
    assert steps.explain(conn, PLAIN_BOX_EVIDENCE, box)["tasks"] == expected < harness.config.citus.shard_count


def test_the_application_role_calls_them(conn: psycopg.Connection, points: list, harness: Harness) -> None:
    args = {"lon": LON, "lat": LAT, "r": 5000}
    app = harness.plan.dsn("read-write", harness.passwords.app, harness.config.citus.app_user)
    with psycopg.connect(app, autocommit=True) as app_conn:
        got = ids(app_conn, "SELECT * FROM vehicle_ids_within(%(lon)s, %(lat)s, %(r)s)", args)
        box = ids(app_conn, "SELECT * FROM vehicle_ids_in_box(-74.0, 40.7, -73.9, 40.8)", {})
        plain = ids(app_conn, PLAIN_WITHIN.format(lon=LON, lat=LAT, r=5000), {})
    assert got and got == plain == ids(conn, "SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, %(r)s)",
                                       args)
    assert box == ids(conn, "SELECT id FROM vehicle_locations_in_box(-74.0, 40.7, -73.9, 40.8)", {})


def test_citus_cannot_run_an_inlinable_sql_function_over_the_table(conn: psycopg.Connection, points: list) -> None:
    """Why 0003's functions are PL/pgSQL: the inlinable form (LANGUAGE sql STABLE, one SELECT) is refused by
    Citus (or, planned as a local query, misses the shards' rows). If a Citus upgrade makes this fail, inlinable
    functions became possible: switch to them."""
    args = {"lon": LON, "lat": LAT}
    right = ids(conn, "SELECT id FROM vehicle_locations_within(%(lon)s, %(lat)s, 5000)", args)
    assert right
    conn.execute("CREATE FUNCTION pg_temp.inlinable_within(lon float8, lat float8, radius_m float8) "
                 "RETURNS SETOF bigint LANGUAGE sql STABLE AS $$ " + PLAIN_WITHIN.format(
                     lon="lon", lat="lat", r="radius_m") + " $$")
    try:
        try:
            got = ids(conn, "SELECT * FROM pg_temp.inlinable_within(%(lon)s, %(lat)s, 5000)", args)
        except psycopg.Error as exc:
            assert "sql function" in str(exc).lower() or "distributed plan" in str(exc).lower(), exc
        else:
            assert got != right, "Citus now runs inlinable SQL functions over distributed tables"
    finally:
        conn.execute("DROP FUNCTION IF EXISTS pg_temp.inlinable_within(float8, float8, float8)")
