-- Two-phase commit recovery that cannot roll back an acknowledged write.
--
-- A multi-shard write is acknowledged once the coordinator has committed it (its commit records are in
-- pg_dist_transaction); a worker that missed the COMMIT PREPARED keeps a prepared transaction until recovery
-- commits it. Citus's recovery asks the node pg_dist_node names for its pg_prepared_xacts and deletes every
-- record it finds no prepared transaction for. A node in recovery lists none, although it holds them (PostgreSQL
-- shows replayed prepared transactions only once the node is promoted): when pg_dist_node names a demoted leader
-- or a standby about to be promoted, the records go, and the next recovery rolls those transactions back on the
-- real leader. Seen once in 30 partition drills: an acknowledged write lost after etcd lost its quorum with
-- failsafe_mode off. So Citus's periodic recovery is off (citus.recover_2pc_interval = -1, cluster/render/
-- patroni.py) and this function is what runs instead: it recovers only when every primary pg_dist_node names
-- answers and is out of recovery, and otherwise leaves everything for the next minute.
--
-- The check and the recovery are milliseconds apart; a node would have to shut down and start again in recovery
-- between them (seconds) for the hazard to return.

CREATE EXTENSION IF NOT EXISTS pg_cron;

CREATE FUNCTION citus_cluster_recover_prepared_transactions() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    not_writable text;
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN 0;  -- a standby coordinator: the leader recovers
    END IF;
    SELECT string_agg(format('%s:%s (%s)', n.nodename, n.nodeport,
                             CASE WHEN r.success THEN 'in recovery' ELSE r.result END), ', ')
      INTO not_writable
      FROM run_command_on_all_nodes('SELECT pg_is_in_recovery()') r
      JOIN pg_dist_node n USING (nodeid)
     WHERE NOT r.success OR r.result <> 'f';
    IF not_writable IS NOT NULL THEN
        RAISE WARNING 'two-phase commit recovery postponed: % not a writable primary', not_writable
            USING HINT = 'Patroni is failing over or a node is unreachable; the next run (every minute) retries.';
        RETURN 0;
    END IF;
    RETURN recover_prepared_transactions();
END;
$$;

REVOKE ALL ON FUNCTION citus_cluster_recover_prepared_transactions() FROM PUBLIC;

SELECT cron.schedule('citus-cluster-2pc-recovery', '* * * * *',
                     'SELECT citus_cluster_recover_prepared_transactions()');
