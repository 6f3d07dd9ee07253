"""The seed's workload: its dataset (same columns, same value ranges), its queries, and its schema for comparison.

The data is generated deterministically from a seed, so the cluster, the seed's schema and a single node all
get the very same rows; `now` is pinned when the generator is built so time-window queries see the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# The seed's ranges: vehicles 1..10,000; a 0.5° square near New York; the last 30 days; 3 region codes.
VEHICLES = 10_000
LON, LAT, SIZE = -74.0, 40.7, 0.5
DAYS = 30
CENTRE = (-73.9857, 40.7484)  # the seed's radius query centre (Empire State Building)

TABLE = "vehicle_locations"
SEED_TABLE = "vehicle_locations_seed"
COLUMNS = "vehicle_id, location, recorded_at, region_code"


@dataclass(frozen=True)
class Query:
    name: str
    sql: str  # `{table}` is replaced by the table under test
    index: str | None  # the index (name suffix) that should serve it on the project's schema, if any
    what: str


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

# The seed's schema, as its init.sql had it: distributed by region_code, a geometry index only.
SEED_SCHEMA = (
    f"CREATE TABLE {SEED_TABLE} (id bigserial, vehicle_id int NOT NULL, location geometry(Point, 4326) NOT NULL, "
    "recorded_at timestamptz NOT NULL, region_code text NOT NULL)",
    f"CREATE INDEX {SEED_TABLE}_location ON {SEED_TABLE} USING gist (location)",
    f"CREATE INDEX {SEED_TABLE}_region_code ON {SEED_TABLE} (region_code)",
    f"SELECT create_distributed_table('{SEED_TABLE}', 'region_code')",
)

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
    """`rows` seed-shaped rows in `chunks` independent, reproducible chunks (one per loader connection)."""

    def __init__(self, rows: int, seed: int = 42, now: datetime | None = None) -> None:
        self.rows, self.seed = rows, seed
        self.now = (now or datetime.now(timezone.utc)).replace(microsecond=0)

    def chunk_sizes(self, chunks: int) -> list[int]:
        base, extra = divmod(self.rows, chunks)
        return [base + (1 if i < extra else 0) for i in range(chunks)]

    def copy_lines(self, chunk: int, size: int) -> Iterator[str]:
        """COPY text lines for one chunk: vehicle_id, EWKT point, timestamp, region (the seed's CASE)."""
        rng = random.Random(self.seed * 1_000_003 + chunk)
        span = DAYS * 86400
        for _ in range(size):
            vehicle = int(rng.random() * VEHICLES) + 1
            lon, lat = LON + rng.random() * SIZE, LAT + rng.random() * SIZE
            at = self.now - timedelta(seconds=rng.random() * span)
            region = "region_north" if rng.random() < 0.33 else (
                "region_south" if rng.random() < 0.66 else "region_central")
            yield f"{vehicle}\tSRID=4326;POINT({lon:.7f} {lat:.7f})\t{at.isoformat()}\t{region}\n"
