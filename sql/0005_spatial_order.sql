-- Physical spatial order after bulk loads (issue 16): rows loaded in arrival order scatter a small area's points
-- over every page of a shard, so a radius query reads a page per row it returns. Rewriting each shard in the
-- order of its spatial index puts neighbours on the same pages; measured on 1M rows (5 km radius, 33k rows):
-- single node 68 -> 50 ms, cluster 52 -> 46 ms p50.
--
-- Citus 13.2 propagates `CLUSTER vehicle_locations_data USING ...` to the shards, but as one distributed
-- transaction: every shard stays locked (ACCESS EXCLUSIVE: no reads, no writes) until the last one is rewritten.
-- This function runs CLUSTER on each shard placement itself instead, one shard at a time over its own connection
-- (master_run_on_worker, what run_command_on_shards uses; that one names a shard but not the shard's index): a
-- shard is locked only while it is rewritten, and each commits on its own. Every rewrite is WAL-logged, so the standbys get the same
-- order by replication. Run it after bulk loads (the order decays as rows arrive in time order), at a quiet
-- time:
--
--   SELECT vehicle_locations_order_by_location();   -- as the superuser, on the coordinator leader
--
-- Superuser only: EXECUTE is revoked from PUBLIC, and CLUSTER needs the table's owner anyway.

CREATE FUNCTION vehicle_locations_order_by_location() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    placement record;
    outcome record;
    failures text[] := '{}';
    done int := 0;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'this node is a standby: the spatial order is written on the leader'
            USING HINT = 'Connect through the read-write endpoint; the standbys get the new order by replication.';
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'role % may not reorder vehicle_locations_data: CLUSTER needs the table owner', current_user
            USING HINT = 'Run it as the cluster superuser (the role provisioning connects as).';
    END IF;
    FOR placement IN
        SELECT s.shardid, shard_name(s.logicalrelid, s.shardid) AS shard, p.nodename, p.nodeport
          FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid)
         WHERE s.logicalrelid = 'vehicle_locations_data'::regclass AND p.shardstate = 1
         ORDER BY s.shardid
    LOOP
        -- Citus names a shard's index after the table's index with the shard id appended.
        FOR outcome IN
            SELECT r.success, r.result FROM master_run_on_worker(
                ARRAY[placement.nodename, placement.nodename], ARRAY[placement.nodeport, placement.nodeport],
                ARRAY[format('CLUSTER %s USING %I', placement.shard,
                             'vehicle_locations_data_geom_idx_' || placement.shardid),
                      format('ANALYZE %s', placement.shard)],
                false) r
        LOOP
            IF NOT outcome.success THEN
                failures := failures || format('%s on %s:%s: %s', placement.shard, placement.nodename,
                                               placement.nodeport, outcome.result);
            END IF;
        END LOOP;
        done := done + 1;
    END LOOP;
    IF cardinality(failures) > 0 THEN
        RAISE EXCEPTION 'spatial order failed on % of % shard placements: %', cardinality(failures), done,
                        array_to_string(failures, '; ')
            USING HINT = 'The other shards are ordered (each commits on its own); fix the cause (a worker down '
                         'or failing over?) and run it again: ordering an ordered shard is harmless.';
    END IF;
    RETURN done;
END;
$$;

REVOKE ALL ON FUNCTION vehicle_locations_order_by_location() FROM PUBLIC;
