"""prometheus-postgres-exporter beside every member: its Citus queries, its TLS web config, its environment.

Debian's exporter (0.11) serves its built-in PostgreSQL metrics plus the queries rendered here
(`--extend.query-path`). Each query names the rows it returns: the metric names are `<query>_<column>`.

- Cluster-wide Citus facts come from the coordinator leader only (every other member's exporter returns no row for
  them, so no series is doubled): per pg_dist_node row its role, whether it is the active primary of its group,
  its shards and their bytes (`citus_node_*`). Alert rules compare `citus_node_primary` with Patroni's leaders and
  compute the skew. (Not the coordinator's per-node connection counts: Citus 13 does not grant
  citus_remote_connection_stats() to PUBLIC, and the monitoring role gets no grants on Citus's functions; the
  connections each node receives are `citus_backends_connections{internal="true"}`.)
- Per member: client backends split into Citus-internal (distributed queries arriving from other nodes) and the
  rest (`citus_backends_*`); on a primary, each standby's lag in bytes and seconds (`citus_replication_*`); on a
  standby, what it received but has not replayed (`citus_standby_*`); WAL on disk against max_wal_size
  (`citus_wal_*`); free space of the data directory's filesystem, as Citus's rebalancer reads it (`citus_disk_*`);
  the archiver (`citus_archiver_*`); and the exporter's own `pg_replication_slots`, rewritten to work on standbys.

The exporter logs in as cluster.roles.MONITORING_USER (pg_monitor), over verified TLS, its password in a file
only the server user reads (DATA_SOURCE_PASS_FILE): never in argv, the environment or a rendered file.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from cluster.plan import MONITORING_USER, SSLMODE, Member, Plan
from cluster.tls import TlsPaths

QUERIES_FILE = "queries.yml"
WEB_CONFIG_FILE = "web.yml"
PASSWORD_FILE = "monitor.password"  # written by the harness / uploaded by the component, 0600, never rendered
DOCKER_EXPORTER_DIR = "/etc/citus-cluster/exporter"
BINARY = "prometheus-postgres-exporter"  # Debian's package and binary name

# Gates a query to the coordinator leader: an uncorrelated scalar subquery becomes a one-time filter, so on every
# other member the Citus views behind it are never read (citus_shards asks every worker for sizes).
ON_COORDINATOR_LEADER = "(SELECT NOT pg_is_in_recovery() AND groupid = 0 FROM pg_dist_local_group)"


def _label(description: str) -> dict[str, str]:
    return {"usage": "LABEL", "description": description}


def _gauge(description: str) -> dict[str, str]:
    return {"usage": "GAUGE", "description": description}


def _counter(description: str) -> dict[str, str]:
    return {"usage": "COUNTER", "description": description}


def queries(plan: Plan) -> dict[str, Any]:
    return {
        "citus_node": {
            "query": (
                "SELECT n.groupid::text AS group_id, n.nodename || ':' || n.nodeport AS node, "
                "n.noderole::text AS role, (n.isactive AND n.noderole = 'primary')::int AS primary, "
                "count(s.shardid) AS shards, coalesce(sum(s.shard_size), 0) AS bytes "
                "FROM pg_dist_node n LEFT JOIN citus_shards s ON s.nodename = n.nodename AND s.nodeport = n.nodeport "
                "AND s.citus_table_type = 'distributed' "
                f"WHERE {ON_COORDINATOR_LEADER} GROUP BY n.groupid, n.nodename, n.nodeport, n.noderole, n.isactive"
            ),
            "master": True,
            "metrics": [
                {"group_id": _label("Citus group id of the node")},
                {"node": _label("host:port as pg_dist_node registers it")},
                {"role": _label("pg_dist_node noderole (primary or secondary)")},
                {"primary": _gauge("1 when this row is its group's active primary for Citus")},
                {"shards": _gauge("placements of distributed tables on the node")},
                {"bytes": _gauge("bytes of those placements")},
            ],
        },
        "citus_backends": {
            "query": (
                "SELECT k.internal::text AS internal, count(a.pid) AS connections "
                "FROM (VALUES (true), (false)) AS k(internal) LEFT JOIN pg_stat_activity a "
                "ON a.backend_type = 'client backend' AND (a.application_name LIKE 'citus_internal%') = k.internal "
                "GROUP BY k.internal"
            ),
            "master": True,
            "metrics": [
                {"internal": _label("true: a Citus node-to-node connection (a distributed query's fragment)")},
                {"connections": _gauge("client backends on this member")},
            ],
        },
        "citus_replication": {
            "query": (
                "SELECT application_name AS standby, sync_state AS sync_state, "
                "coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_lsn() END, replay_lsn), 0) AS lag_bytes, "
                "coalesce(extract(epoch FROM replay_lag), 0) AS lag_seconds FROM pg_stat_replication"
            ),
            "master": True,
            "metrics": [
                {"standby": _label("the standby's application_name (its member name)")},
                {"sync_state": _label("async, sync, quorum or potential")},
                {"lag_bytes": _gauge("WAL bytes the standby has not replayed yet")},
                {"lag_seconds": _gauge("replay lag as the primary measured it")},
            ],
        },
        "citus_standby": {
            "query": (
                "SELECT pg_is_in_recovery()::int AS in_recovery, "
                "CASE WHEN pg_is_in_recovery() THEN coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                "pg_last_wal_replay_lsn()), 0) ELSE 0 END AS unreplayed_bytes, "
                "(SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming"
            ),
            "master": True,
            "metrics": [
                {"in_recovery": _gauge("1 on a standby")},
                {"unreplayed_bytes": _gauge("WAL received but not replayed yet (0 on a primary)")},
                {"streaming": _gauge("1 when its WAL receiver streams from a primary")},
            ],
        },
        "citus_wal": {
            "query": (
                "SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes, "
                "pg_size_bytes(current_setting('max_wal_size')) AS max_bytes FROM pg_ls_waldir()"
            ),
            "master": True,
            "metrics": [
                {"files": _gauge("WAL segments in pg_wal")},
                {"bytes": _gauge("bytes in pg_wal: what a failing archive or a stuck slot piles up")},
                {"max_bytes": _gauge("max_wal_size: what checkpoints keep pg_wal near when all is well")},
            ],
        },
        "citus_disk": {
            "query": ("SELECT available_disk_size AS available_bytes, total_disk_size AS total_bytes "
                      "FROM citus_local_disk_space_stats()"),
            "master": True,
            "metrics": [
                {"available_bytes": _gauge("free bytes on the filesystem of the data directory")},
                {"total_bytes": _gauge("size of that filesystem")},
            ],
        },
        # Overrides the exporter's built-in query of the same name, which calls pg_current_wal_lsn() and so fails on
        # every standby ("recovery is in progress"): the same metrics, measured from the replay position there.
        "pg_replication_slots": {
            "query": (
                "SELECT slot_name, database, active::int AS active, pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() "
                "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn) AS pg_wal_lsn_diff "
                "FROM pg_replication_slots"
            ),
            "master": True,
            "metrics": [
                {"slot_name": _label("the slot")},
                {"database": _label("its database (none for a physical slot)")},
                {"active": _gauge("1 when a consumer is connected")},
                {"pg_wal_lsn_diff": _gauge("WAL bytes the slot holds back")},
            ],
        },
        "citus_archiver": {
            "query": (
                "SELECT archived_count AS archived, failed_count AS failed, "
                "(coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false))::int AS failing "
                "FROM pg_stat_archiver"
            ),
            "master": True,
            "metrics": [
                {"archived": _counter("WAL files archived since the statistics reset")},
                {"failed": _counter("failed archive attempts")},
                {"failing": _gauge("1 when the last attempt failed (no success since)")},
            ],
        },
    }


def exporter_dir(plan: Plan, member: Member) -> str:
    """Where member's exporter finds its files: beside its Patroni directory in the harness, a fixed path in its
    own container."""
    if plan.layout == "docker":
        return DOCKER_EXPORTER_DIR
    return str(PurePosixPath(member.config_dir).parent / "exporter")


def render_queries(plan: Plan) -> str:
    return _yaml(queries(plan))


def render_web_config(member: Member) -> str:
    """/metrics over HTTPS with the member's own certificate (Prometheus verifies it against the cluster CA)."""
    return render_web_config_for(TlsPaths(member.tls_dir))


def render_web_config_for(paths: TlsPaths) -> str:
    """The exporter toolkit's web config (the exporter's and Prometheus's own --web.config.file): HTTPS only."""
    return _yaml({"tls_server_config": {"cert_file": paths.cert, "key_file": paths.key, "min_version": "TLS12"}})


def exporter_env(plan: Plan, member: Member) -> dict[str, str]:
    """No secret: the exporter reads the password from DATA_SOURCE_PASS_FILE and builds the URL itself."""
    directory = exporter_dir(plan, member)
    ca = TlsPaths(member.tls_dir).ca
    return {
        "DATA_SOURCE_URI": f"{member.postgres.address}/{plan.config.citus.database}"
                           f"?sslmode={SSLMODE}&sslrootcert={ca}&application_name=postgres_exporter",
        "DATA_SOURCE_USER": MONITORING_USER,
        "DATA_SOURCE_PASS_FILE": f"{directory}/{PASSWORD_FILE}",
    }


def exporter_command(plan: Plan, member: Member, binary: str = BINARY) -> list[str]:
    directory = exporter_dir(plan, member)
    return [
        binary,
        f"--web.listen-address={member.exporter.bind}",
        f"--web.config.file={directory}/{WEB_CONFIG_FILE}",
        f"--extend.query-path={directory}/{QUERIES_FILE}",
        "--disable-settings-metrics",  # ~300 pg_settings series per member, none of them alerted on
        "--log.level=info",  # a query that fails is logged at info
    ]


def render_exporter_files(plan: Plan, member: Member) -> dict[str, str]:
    """The exporter's credential-free files, by name inside exporter_dir."""
    return {QUERIES_FILE: render_queries(plan), WEB_CONFIG_FILE: render_web_config(member)}


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=1000)
