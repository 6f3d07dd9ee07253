-- The seed's table, same columns, designed to use the whole cluster.
--
-- Distribution column: vehicle_id (10,000 distinct values in the seed's data) spreads rows over every shard;
-- the seed's region_code has 3 values and can fill at most 3 of 32 shards. The primary key must contain the
-- distribution column, hence (vehicle_id, id).
CREATE TABLE vehicle_locations (
    id bigserial,
    vehicle_id int NOT NULL,
    location geometry(Point, 4326) NOT NULL,
    recorded_at timestamptz NOT NULL,
    region_code text NOT NULL,
    PRIMARY KEY (vehicle_id, id)
);

SELECT create_distributed_table('vehicle_locations', 'vehicle_id');

-- The seed's radius query filters on ST_DWithin(location::geography, ..., metres); only an index on that very
-- expression serves it (the seed's geometry index cannot, so every row was read).
CREATE INDEX vehicle_locations_geog_idx ON vehicle_locations USING gist ((location::geography));
-- The seed's bbox query (ST_Within on geometry).
CREATE INDEX vehicle_locations_geom_idx ON vehicle_locations USING gist (location);
-- One vehicle's track over a time window, and "newest positions" queries.
CREATE INDEX vehicle_locations_vehicle_time_idx ON vehicle_locations (vehicle_id, recorded_at DESC);
CREATE INDEX vehicle_locations_recorded_at_idx ON vehicle_locations (recorded_at);
