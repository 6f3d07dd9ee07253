-- Query functions that ship and keep only ids: 0002's functions return whole rows (`location` included), which
-- every worker sends and the function holds in a tuplestore before the caller sees the first row; for a 5 km
-- radius in a dense city (33k rows) that cost 20-25 % of the 16-client throughput of the plain pruned query
-- (issue 16). These return the same rows' ids only, pruned the same way (constant distribution values in the
-- query text). 0002's functions stay as they are.
--
-- Why not inlinable LANGUAGE sql functions (which PostgreSQL would expand into the caller's query, so nothing is
-- materialised): Citus refuses an SQL function with parameters over a distributed table ("parameterized queries
-- for SQL functions referencing distributed tables are not supported"; tests/integration/
-- test_narrow_queries.py pins it). Where no materialisation at all is wanted, write the plain query with the
-- immutable key function: PostgreSQL folds it into constants before Citus plans, so it prunes as these do:
--
--   SELECT id, vehicle_id, recorded_at, region_code FROM vehicle_locations_data
--   WHERE spatial_key = ANY (vehicle_spatial_keys_within(-73.9857, 40.7484, 5000))
--     AND ST_DWithin(location::geography, ST_SetSRID(ST_MakePoint(-73.9857, 40.7484), 4326)::geography, 5000);
--
-- Execute is granted to PUBLIC by default, as for 0002's functions: the application role calls them, and they
-- read vehicle_locations_data with the caller's rights (provisioning grants the app role the schema's tables).

-- Ids of the positions within radius_m metres of (lon, lat): the ids of vehicle_locations_within.
CREATE FUNCTION vehicle_ids_within(lon float8, lat float8, radius_m float8) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    IF lat NOT BETWEEN -90 AND 90 THEN
        RAISE EXCEPTION 'latitude % is outside [-90, 90]', lat;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT id FROM vehicle_locations_data WHERE spatial_key = ANY (%L::bigint[]) AND '
        'ST_DWithin(location::geography, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s)',
        vehicle_spatial_keys_within(lon, lat, radius_m), lon, lat, radius_m);
END
$$;

-- Ids of the positions within a lon/lat box: the ids of vehicle_locations_in_box.
CREATE FUNCTION vehicle_ids_in_box(xmin float8, ymin float8, xmax float8, ymax float8) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT id FROM vehicle_locations_data WHERE spatial_key = ANY (%L::bigint[]) AND '
        'ST_Within(location, ST_MakeEnvelope(%s, %s, %s, %s, 4326))',
        vehicle_spatial_keys(xmin, ymin, xmax, ymax), xmin, ymin, xmax, ymax);
END
$$;
