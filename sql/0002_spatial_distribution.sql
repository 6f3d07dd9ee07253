-- Spatial distribution: rows are placed by where they are, so radius, box and nearest-vehicle queries touch
-- only the shards that can hold an answer.
--
-- Reads two settings that provisioning passes from the stack config (and records here, so a later change is
-- refused instead of silently misplacing rows):
--   citus_cluster.distribution_strategy  'spatial' (distribute by spatial_key) or 'vehicle' (by vehicle_id)
--   citus_cluster.cell_degrees           grid cell size in degrees; 180 / it is whole
--
-- The grid. Longitude is normalised to [-180, 180) and latitude clamped to [-90, 90]; the cell of a point is
-- (col, row) = (floor((lon + 180) / d) mod ncols, floor((lat + 90) / d)), the last row holding the north pole.
-- Cells are dealt to shards in a repeating tile: slot = (col + step * row) mod n, where n is the table's shard
-- count and step about sqrt(n), so any step x ceil(n / step) block of cells holds every slot. Each slot's
-- distribution value (spatial_key) is a number that Citus hashes into its own shard, so n slots fill n shards
-- exactly: a dense city spreads over every shard (balance) while a query touching k cells touches at most k
-- shards (pruning). Plain hashing of cells cannot do both (measured: benchmarks/results/spatial/README.md).
--
-- Citus refuses a generated column as the distribution column, so the table is vehicle_locations_data and
-- vehicle_locations becomes a view over it whose INSERT rule computes spatial_key: the seed's own INSERT
-- statements, unchanged, still work (set-based, through the coordinator). Bulk loaders COPY into
-- vehicle_locations_data with spatial_key filled (vehicle_spatial_grid() gives what they need).

SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

DO $settings$
BEGIN
    IF current_setting('citus_cluster.distribution_strategy', true) IS NULL
       OR current_setting('citus_cluster.cell_degrees', true) IS NULL THEN
        RAISE EXCEPTION 'citus_cluster.distribution_strategy and citus_cluster.cell_degrees are not set'
            USING HINT = 'Apply sql/ with `python -m cluster provision`: it passes citus.distribution from the stack config.';
    END IF;
    IF current_setting('citus_cluster.distribution_strategy') NOT IN ('spatial', 'vehicle') THEN
        RAISE EXCEPTION 'citus_cluster.distribution_strategy is %, expected spatial or vehicle',
            current_setting('citus_cluster.distribution_strategy');
    END IF;
END
$settings$;

INSERT INTO citus_cluster_settings (name, value) VALUES
    ('distribution_strategy', current_setting('citus_cluster.distribution_strategy')),
    ('cell_degrees', current_setting('citus_cluster.cell_degrees'));

-- The grid's constants, fixed at creation: cell size, tile step, and one distribution value per shard.
-- A value's shard follows Citus's hash ranges for a new table with citus.shard_count shards (the int32 hash
-- space cut into equal parts); the table created below is checked against them.
DO $grid$
DECLARE
    d float8 := current_setting('citus_cluster.cell_degrees')::float8;
    n int := current_setting('citus.shard_count')::int;
    width bigint := 4294967296 / current_setting('citus.shard_count')::bigint;
    keys bigint[];
BEGIN
    SELECT array_agg(v ORDER BY slot) INTO keys FROM (
        SELECT DISTINCT ON (slot) slot, v FROM (
            SELECT v, least((worker_hash(v)::bigint + 2147483648) / width, n - 1) AS slot
            FROM generate_series(1::bigint, 1000000) AS v) hashed
        ORDER BY slot, v) firsts;
    IF cardinality(keys) <> n THEN
        RAISE EXCEPTION 'found distribution values for % of % shards', cardinality(keys), n;
    END IF;
    EXECUTE format($f$
        CREATE FUNCTION vehicle_spatial_grid(OUT cell_degrees float8, OUT ncols bigint, OUT nrows bigint,
                                             OUT step bigint, OUT keys bigint[])
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $body$ SELECT %s::float8, %s::bigint, %s::bigint, %s::bigint, %L::bigint[] $body$
        $f$, d, round(360 / d), round(180 / d), greatest(1, round(sqrt(n))), keys);
END
$grid$;

-- The distribution value of a point (lon, lat in degrees, any longitude).
CREATE FUNCTION vehicle_spatial_key(lon float8, lat float8) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT g.keys[1 + (c.col + g.step * c.row) % cardinality(g.keys)]
    FROM vehicle_spatial_grid() g,
         LATERAL (SELECT floor((lon - 360 * floor((lon + 180) / 360) + 180) / g.cell_degrees)::bigint % g.ncols AS col,
                         least(greatest(floor((lat + 90) / g.cell_degrees)::bigint, 0), g.nrows - 1) AS row) c
$$;

-- Every distribution value a box of cells can hold: rows [lat_lo, lat_hi], longitudes [lon_lo, lon_hi] read
-- eastwards (lon_hi may exceed 180 to cross the antimeridian; a span of 360 or more is the whole row).
CREATE FUNCTION vehicle_spatial_keys(lon_lo float8, lat_lo float8, lon_hi float8, lat_hi float8) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    g record := vehicle_spatial_grid();
    n int := cardinality(g.keys);
    first_row bigint := least(greatest(floor((greatest(lat_lo, -90) + 90) / g.cell_degrees)::bigint, 0), g.nrows - 1);
    last_row bigint := least(greatest(floor((least(lat_hi, 90) + 90) / g.cell_degrees)::bigint, 0), g.nrows - 1);
    west float8;
    first_col bigint;
    last_col bigint;
    slots bool[] := array_fill(false, ARRAY[n]);
    found int := 0;
    s bigint;
BEGIN
    IF lat_hi < lat_lo OR lon_hi < lon_lo OR lat_hi < -90 OR lat_lo > 90 THEN
        RETURN '{}';
    END IF;
    IF lon_hi - lon_lo >= 360 THEN
        first_col := 0;
        last_col := g.ncols - 1;
    ELSIF lon_lo >= -180 AND lon_hi < 180 THEN
        -- The very expression vehicle_spatial_key uses, so a point on a cell edge lands on the same side.
        first_col := floor((lon_lo + 180) / g.cell_degrees)::bigint;
        last_col := floor((lon_hi + 180) / g.cell_degrees)::bigint;
    ELSE
        -- Across (or beyond) the antimeridian: start from the west edge normalised to [-180, 180), widened by
        -- 1e-9 degrees against rounding; columns past ncols - 1 wrap to 0, 1, ... below.
        west := (lon_lo - 1e-9) - 360 * floor((lon_lo - 1e-9 + 180) / 360);
        first_col := floor((west + 180) / g.cell_degrees)::bigint;
        last_col := floor((west + (lon_hi - lon_lo) + 2e-9 + 180) / g.cell_degrees)::bigint;
    END IF;
    IF last_col - first_col + 1 >= n THEN
        RETURN g.keys;  -- every row of the box already runs through every slot
    END IF;
    FOR r IN first_row .. last_row LOOP
        FOR c IN first_col .. last_col LOOP
            s := 1 + ((c % g.ncols) + g.step * r) % n;
            IF NOT slots[s] THEN
                slots[s] := true;
                found := found + 1;
                IF found = n THEN
                    RETURN g.keys;
                END IF;
            END IF;
        END LOOP;
    END LOOP;
    RETURN ARRAY(SELECT g.keys[i] FROM generate_subscripts(slots, 1) i WHERE slots[i] ORDER BY i);
END
$$;

-- Every distribution value that can hold a point within radius_m metres (ST_DWithin on geography) of
-- (lon, lat). Conservative bounds: a geodesic of length r moves latitude by at most r / 6,335,000 rad (the
-- ellipsoid's smallest meridional radius of curvature, 6,335,439 m) and longitude by at most
-- r / (6,370,000 m x cos of the farthest latitude reached) (below both the equatorial radius and the mean
-- sphere's); a circle that reaches a pole spans every longitude.
CREATE FUNCTION vehicle_spatial_keys_within(lon float8, lat float8, radius_m float8) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    dlat float8 := degrees(greatest(radius_m, 0) / 6335000.0) * 1.000001 + 1e-9;
    far float8 := abs(lat) + dlat;
    dlon float8;
BEGIN
    IF far >= 90 THEN
        RETURN vehicle_spatial_keys(-180, lat - dlat, 180, lat + dlat);
    END IF;
    dlon := degrees(greatest(radius_m, 0) / (6370000.0 * cos(radians(far)))) * 1.000001 + 1e-9;
    IF dlon >= 180 THEN
        RETURN vehicle_spatial_keys(-180, lat - dlat, 180, lat + dlat);
    END IF;
    RETURN vehicle_spatial_keys(lon - dlon, lat - dlat, lon + dlon, lat + dlat);
END
$$;

-- The table behind vehicle_locations: the seed's columns plus spatial_key.
CREATE TABLE vehicle_locations_data (
    id bigserial,
    vehicle_id int NOT NULL,
    location geometry(Point, 4326) NOT NULL,
    recorded_at timestamptz NOT NULL,
    region_code text NOT NULL,
    spatial_key bigint NOT NULL
);

DO $distribute$
DECLARE
    by_space bool := current_setting('citus_cluster.distribution_strategy') = 'spatial';
    column_name text := CASE WHEN by_space THEN 'spatial_key' ELSE 'vehicle_id' END;
    shards int;
BEGIN
    -- The primary key must contain the distribution column.
    EXECUTE format('ALTER TABLE vehicle_locations_data ADD PRIMARY KEY (%I, id)', column_name);
    PERFORM create_distributed_table('vehicle_locations_data', column_name, colocate_with => 'none');
    SELECT count(*) INTO shards FROM pg_dist_shard WHERE logicalrelid = 'vehicle_locations_data'::regclass;
    IF by_space AND shards <> (SELECT count(DISTINCT get_shard_id_for_distribution_column('vehicle_locations_data', k))
                               FROM unnest((vehicle_spatial_grid()).keys) k) THEN
        RAISE EXCEPTION 'the grid''s distribution values do not fall one per shard of vehicle_locations_data';
    END IF;
END
$distribute$;

CREATE INDEX vehicle_locations_data_geog_idx ON vehicle_locations_data USING gist ((location::geography));
CREATE INDEX vehicle_locations_data_geom_idx ON vehicle_locations_data USING gist (location);
CREATE INDEX vehicle_locations_data_vehicle_time_idx ON vehicle_locations_data (vehicle_id, recorded_at DESC);
CREATE INDEX vehicle_locations_data_recorded_at_idx ON vehicle_locations_data (recorded_at);

-- Rows written under 0001, if any, keep their ids.
INSERT INTO vehicle_locations_data (id, vehicle_id, location, recorded_at, region_code, spatial_key)
SELECT id, vehicle_id, location, recorded_at, region_code, vehicle_spatial_key(ST_X(location), ST_Y(location))
FROM vehicle_locations;
SELECT setval('vehicle_locations_data_id_seq', max(id)) FROM vehicle_locations_data HAVING count(*) > 0;
DROP TABLE vehicle_locations;

CREATE VIEW vehicle_locations AS
SELECT id, vehicle_id, location, recorded_at, region_code FROM vehicle_locations_data;

-- The seed's INSERT (VALUES or SELECT), unchanged. OFFSET 0 keeps the inserted rows a sub-select evaluated
-- once, so a volatile expression such as random() in NEW.location is not re-evaluated for spatial_key. A
-- missing id takes the table's sequence here (Citus does not propagate a default on a view's column).
CREATE RULE vehicle_locations_insert AS ON INSERT TO vehicle_locations DO INSTEAD
INSERT INTO vehicle_locations_data (id, vehicle_id, location, recorded_at, region_code, spatial_key)
SELECT n.id, n.vehicle_id, n.location, n.recorded_at, n.region_code,
       vehicle_spatial_key(ST_X(n.location), ST_Y(n.location))
FROM (SELECT coalesce(NEW.id, nextval('vehicle_locations_data_id_seq')) AS id, NEW.vehicle_id, NEW.location, NEW.recorded_at, NEW.region_code OFFSET 0) n
RETURNING vehicle_locations_data.id, vehicle_locations_data.vehicle_id, vehicle_locations_data.location,
          vehicle_locations_data.recorded_at, vehicle_locations_data.region_code;

-- Query functions. Each puts its distribution values into the query text as constants (Citus prunes shards
-- only on constants known when it plans; a sub-select or a parameter is not pruned) and returns exactly the
-- rows of the plain query on vehicle_locations.

-- Positions within radius_m metres of (lon, lat): the seed's ST_DWithin on geography.
CREATE FUNCTION vehicle_locations_within(lon float8, lat float8, radius_m float8) RETURNS SETOF vehicle_locations
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    IF lat NOT BETWEEN -90 AND 90 THEN
        RAISE EXCEPTION 'latitude % is outside [-90, 90]', lat;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT id, vehicle_id, location, recorded_at, region_code FROM vehicle_locations_data '
        'WHERE spatial_key = ANY (%L::bigint[]) AND ST_DWithin(location::geography, '
        'ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s)',
        vehicle_spatial_keys_within(lon, lat, radius_m), lon, lat, radius_m);
END
$$;

-- Positions within a lon/lat box: the seed's ST_Within(location, ST_MakeEnvelope(..., 4326)).
CREATE FUNCTION vehicle_locations_in_box(xmin float8, ymin float8, xmax float8, ymax float8)
RETURNS SETOF vehicle_locations LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT id, vehicle_id, location, recorded_at, region_code FROM vehicle_locations_data '
        'WHERE spatial_key = ANY (%L::bigint[]) AND ST_Within(location, ST_MakeEnvelope(%s, %s, %s, %s, 4326))',
        vehicle_spatial_keys(xmin, ymin, xmax, ymax), xmin, ymin, xmax, ymax);
END
$$;

-- The k positions nearest to (lon, lat) by distance on the spheroid (ties by id): the search radius grows
-- (100 m, x4) until it holds k positions (or covers the Earth), and the k nearest within it are the k nearest
-- overall. Starting small keeps a dense city centre cheap: every candidate's distance is computed to order them.
CREATE FUNCTION vehicle_locations_nearest(lon float8, lat float8, k int) RETURNS SETOF vehicle_locations
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    radius float8 := 100;
    point text := format('ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography', lon, lat);
    within text;
    found bigint;
BEGIN
    IF lat NOT BETWEEN -90 AND 90 THEN
        RAISE EXCEPTION 'latitude % is outside [-90, 90]', lat;
    END IF;
    LOOP
        within := format('spatial_key = ANY (%L::bigint[]) AND ST_DWithin(location::geography, %s, %s)',
                         vehicle_spatial_keys_within(lon, lat, radius), point, radius);
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM vehicle_locations_data WHERE %s LIMIT %s) c', within, k)
            INTO found;
        EXIT WHEN found >= k OR radius > 20100000;  -- 20,100 km: farther than any two points on Earth
        radius := radius * 4;
    END LOOP;
    RETURN QUERY EXECUTE format(
        'SELECT id, vehicle_id, location, recorded_at, region_code FROM vehicle_locations_data WHERE %s '
        'ORDER BY ST_Distance(location::geography, %s), id LIMIT %s', within, point, k);
END
$$;
