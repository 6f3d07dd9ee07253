"""The seed's workload: its dataset (same columns, same value ranges), its queries, and its schema for comparison.

The data is generated deterministically from a seed, so the cluster, the seed's schema and a single node all
get the very same rows; `now` is pinned when the generator is built so time-window queries see the same rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# The seed's ranges: vehicles 1..10,000; a 0.5° square near New York; the last 30 days; 3 region codes.
VEHICLES = 10_000
LON, LAT, SIZE = -74.0, 40.7, 0.5
DAYS = 30
CENTRE = (-73.9857, 40.7484)  # the seed's radius query centre (Empire State Building)

# The skewed set: 80 % of the points in a square of 5 % of the area (the city centre, around CENTRE), the rest
# uniform as in the seed. Real fleets crowd like this; a grid that balances the seed's data may not.
HOT_SHARE, HOT_AREA = 0.8, 0.05
HOT_SIZE = SIZE * math.sqrt(HOT_AREA)

TABLE = "vehicle_locations"  # what the seed's statements name (a view over DATA_TABLE in the project's schema)
DATA_TABLE = "vehicle_locations_data"  # the distributed table; bulk loads COPY here with spatial_key filled
SEED_TABLE = "vehicle_locations_seed"
COLUMNS = "vehicle_id, location, recorded_at, region_code"
DATA_COLUMNS = COLUMNS + ", spatial_key"


@dataclass(frozen=True)
class Grid:
    """sql/0002's grid, read from the cluster (vehicle_spatial_grid()), so a loader can fill spatial_key.

    `key` is vehicle_spatial_key() step for step in IEEE doubles (the property tests compare the two).
    """

    cell_degrees: float
    ncols: int
    nrows: int
    step: int
    keys: tuple[int, ...]

    @classmethod
    def read(cls, conn: Any) -> Grid:
        d, ncols, nrows, step, keys = conn.execute(
            "SELECT cell_degrees, ncols, nrows, step, keys FROM vehicle_spatial_grid()").fetchone()
        return cls(d, ncols, nrows, step, tuple(keys))

    def key(self, lon: float, lat: float) -> int:
        col = math.floor((lon - 360 * math.floor((lon + 180) / 360) + 180) / self.cell_degrees) % self.ncols
        row = min(max(math.floor((lat + 90) / self.cell_degrees), 0), self.nrows - 1)
        return self.keys[(col + self.step * row) % len(self.keys)]


@dataclass(frozen=True)
class Query:
    name: str
    sql: str  # `{table}` is replaced by the table under test
    index: str | None  # the index (name suffix) that should serve it on the project's schema, if any
    what: str
    evidence: str | None = None  # what to EXPLAIN instead of `sql` (a function call hides its plan)


QUERIES: tuple[Query, ...] = (
    Query(
        "radius_5km",
        "SELECT id, vehicle_id, recorded_at, region_code FROM {table} WHERE ST_DWithin(location::geography, "
        f"ST_SetSRID(ST_MakePoint({CENTRE[0]}, {CENTRE[1]}), 4326)::geography, 5000)",
        "geog_idx",
        "the seed's radius query: vehicles within 5 km of a point",
    ),
    Query(
        "bbox",
        "SELECT * FROM {table} WHERE ST_Within(location, ST_MakeEnvelope(-74.0, 40.7, -73.9, 40.8, 4326))",
        "geom_idx",
        "the seed's bounding-box query",
    ),
    Query(
        "region_count",
        "SELECT region_code, count(*) FROM {table} GROUP BY region_code",
        None,
        "the seed's count per region (a full scan by nature)",
    ),
    Query(
        "recent_vehicles",
        "SELECT vehicle_id, recorded_at FROM {table} WHERE recorded_at > %(now)s - interval '7 days' "
        "ORDER BY recorded_at DESC LIMIT 100",
        "recorded_at_idx",
        "the seed's newest 100 positions of the last 7 days",
    ),
    Query(
        "knn_10",
        "SELECT id, vehicle_id FROM {table} ORDER BY location <-> "
        f"ST_SetSRID(ST_MakePoint({CENTRE[0]}, {CENTRE[1]}), 4326) LIMIT 10",
        "geom_idx",
        "the 10 positions nearest to a point",
    ),
    Query(
        "vehicle_track",
        "SELECT recorded_at, ST_AsText(location) FROM {table} WHERE vehicle_id = 4242 "
        "AND recorded_at > %(now)s - interval '3 days' ORDER BY recorded_at",
        "vehicle_time_idx",
        "one vehicle's track over 3 days",
    ),
    Query(
        "hourly_counts",
        "SELECT date_trunc('hour', recorded_at) AS hour, count(*) FROM {table} "
        "WHERE recorded_at > %(now)s - interval '1 day' GROUP BY 1 ORDER BY 1",
        "recorded_at_idx",
        "a time-window aggregate: positions per hour over the last day",
    ),
)
QUERY_NAMES = tuple(q.name for q in QUERIES)

# The spatial comparison: each query as plain SQL on any schema, and through the project's pruning function.
# `{keys}` in the plain text is where the function adds its constant list of distribution values.
_POINT = f"ST_SetSRID(ST_MakePoint({CENTRE[0]}, {CENTRE[1]}), 4326)"
_RADIUS = ("SELECT id, vehicle_id, recorded_at, region_code FROM {{table}} WHERE {{keys}}"
           f"ST_DWithin(location::geography, {_POINT}::geography, {{radius}})")
BBOX = (-74.0, 40.7, -73.9, 40.8)


@dataclass(frozen=True)
class CompareQuery:
    name: str
    plain: str  # `{table}` and `{keys}` placeholders
    function: str | None  # the same rows through the project's function (None: no spatial predicate)
    keys: str | None  # SQL of the distribution values the function uses, for EXPLAIN evidence
    index: str | None
    what: str

    def query(self, through_function: bool) -> Query:
        plain = self.plain.replace("{keys}", "")
        if not (through_function and self.function):
            return Query(self.name, plain, self.index, self.what)
        evidence = self.plain.replace("{table}", DATA_TABLE).replace("{keys}", f"spatial_key = ANY ({self.keys}) AND ")
        return Query(self.name, self.function, self.index, self.what, evidence)


def _radius(name: str, metres: int) -> CompareQuery:
    return CompareQuery(
        name, _RADIUS.format(radius=metres),
        f"SELECT id, vehicle_id, recorded_at, region_code FROM vehicle_locations_within({CENTRE[0]}, {CENTRE[1]}, "
        f"{metres})", f"vehicle_spatial_keys_within({CENTRE[0]}, {CENTRE[1]}, {metres})", "geog_idx",
        f"the seed's radius query with {metres} m")


COMPARE_QUERIES: tuple[CompareQuery, ...] = (
    _radius("radius_500m", 500),
    _radius("radius_5km", 5000),
    _radius("radius_50km", 50_000),
    CompareQuery(
        "bbox", "SELECT * FROM {{table}} WHERE {{keys}}ST_Within(location, ST_MakeEnvelope({}, {}, {}, {}, 4326))"
        .format(*BBOX),
        "SELECT * FROM vehicle_locations_in_box({}, {}, {}, {})".format(*BBOX),
        "vehicle_spatial_keys({}, {}, {}, {})".format(*BBOX), "geom_idx", "the seed's bounding-box query"),
    CompareQuery(
        "knn_10", f"SELECT id, vehicle_id FROM {{table}} WHERE {{keys}}TRUE ORDER BY location::geography <-> "
        f"{_POINT}::geography LIMIT 10",
        f"SELECT id, vehicle_id FROM vehicle_locations_nearest({CENTRE[0]}, {CENTRE[1]}, 10)",
        f"vehicle_spatial_keys_within({CENTRE[0]}, {CENTRE[1]}, 100)", "geog_idx",
        "the 10 positions nearest to a point (the function's first search radius, 100 m, as evidence)"),
    CompareQuery(
        "vehicle_track", "SELECT recorded_at, ST_AsText(location) FROM {table} WHERE {keys}vehicle_id = 4242 "
        "AND recorded_at > %(now)s - interval '3 days' ORDER BY recorded_at", None, None, "vehicle_time_idx",
        "one vehicle's track over 3 days (no spatial predicate: fans out under the spatial strategy)"),
)
COMPARE_NAMES = tuple(q.name for q in COMPARE_QUERIES)

# The seed's schema, as its init.sql had it: distributed by region_code, a geometry index only.
SEED_SCHEMA = (
    f"CREATE TABLE {SEED_TABLE} (id bigserial, vehicle_id int NOT NULL, location geometry(Point, 4326) NOT NULL, "
    "recorded_at timestamptz NOT NULL, region_code text NOT NULL)",
    f"CREATE INDEX {SEED_TABLE}_location ON {SEED_TABLE} USING gist (location)",
    f"CREATE INDEX {SEED_TABLE}_region_code ON {SEED_TABLE} (region_code)",
    f"SELECT create_distributed_table('{SEED_TABLE}', 'region_code')",
)

# The by-vehicle strategy beside the spatial one on the same cluster (0002's table, distributed by vehicle_id).
BY_VEHICLE_TABLE = "vehicle_locations_by_vehicle"

# A single PostGIS node with the best indexes for the same queries (the baseline the targets compare with).
SINGLE_NODE_SCHEMA = (
    f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, vehicle_id int NOT NULL, "
    "location geometry(Point, 4326) NOT NULL, recorded_at timestamptz NOT NULL, region_code text NOT NULL)",
    f"CREATE INDEX {TABLE}_geog_idx ON {TABLE} USING gist ((location::geography))",
    f"CREATE INDEX {TABLE}_geom_idx ON {TABLE} USING gist (location)",
    f"CREATE INDEX {TABLE}_vehicle_time_idx ON {TABLE} (vehicle_id, recorded_at DESC)",
    f"CREATE INDEX {TABLE}_recorded_at_idx ON {TABLE} (recorded_at)",
)

# The seed's own load statement (INSERT ... SELECT on the server), for the load-speed comparison.
SEED_INSERT = (
    f"INSERT INTO {{table}} ({COLUMNS}) SELECT (floor(random() * {VEHICLES}) + 1)::int, "
    f"ST_SetSRID(ST_MakePoint({LON} + random() * {SIZE}, {LAT} + random() * {SIZE}), 4326), "
    f"now() - (random() * interval '{DAYS} days'), "
    "CASE WHEN random() < 0.33 THEN 'region_north' WHEN random() < 0.66 THEN 'region_south' "
    "ELSE 'region_central' END FROM generate_series(1, %(rows)s)"
)


class Dataset:
    """`rows` seed-shaped rows in `chunks` independent, reproducible chunks (one per loader connection).

    skewed: HOT_SHARE of the points in the HOT_AREA square at the seed square's south-west corner (around
    CENTRE, the seed's radius query centre), the rest uniform.
    """

    def __init__(self, rows: int, seed: int = 42, now: datetime | None = None, skewed: bool = False) -> None:
        self.rows, self.seed, self.skewed = rows, seed, skewed
        self.now = (now or datetime.now(timezone.utc)).replace(microsecond=0)

    @property
    def name(self) -> str:
        return "skewed" if self.skewed else "uniform"

    def chunk_sizes(self, chunks: int) -> list[int]:
        base, extra = divmod(self.rows, chunks)
        return [base + (1 if i < extra else 0) for i in range(chunks)]

    def copy_lines(self, chunk: int, size: int, grid: Grid | None = None) -> Iterator[str]:
        """COPY text lines for one chunk: vehicle_id, EWKT point, timestamp, region (the seed's CASE), and with
        a grid the spatial_key of the point as written (the rounded coordinates the server will store)."""
        rng = random.Random(self.seed * 1_000_003 + chunk)
        span = DAYS * 86400
        for _ in range(size):
            vehicle = int(rng.random() * VEHICLES) + 1
            extent = HOT_SIZE if self.skewed and rng.random() < HOT_SHARE else SIZE
            lon, lat = f"{LON + rng.random() * extent:.7f}", f"{LAT + rng.random() * extent:.7f}"
            at = self.now - timedelta(seconds=rng.random() * span)
            region = "region_north" if rng.random() < 0.33 else (
                "region_south" if rng.random() < 0.66 else "region_central")
            key = f"\t{grid.key(float(lon), float(lat))}" if grid else ""
            yield f"{vehicle}\tSRID=4326;POINT({lon} {lat})\t{at.isoformat()}\t{region}{key}\n"
