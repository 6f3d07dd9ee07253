"""Prometheus files for the cluster: a scrape config (every member's Patroni /metrics and
prometheus-postgres-exporter, every coordinator member's prometheus-pgbouncer-exporter, HAProxy's built-in
exporter, every etcd member's /metrics) and alert rules on those metrics. Pure: plan in, YAML out (`python -m
cluster render` writes them under prometheus/).

Patroni labels its metrics with scope and member name only, so the scrape config adds what the rules need per
target: `citus_group`, `member`, `postgres` (host:port as Citus registers the member) and `has_standby` (the group
was planned with more than one member). Exporter targets (postgres and pgbouncer) get `citus_group` and `member`.

Every endpoint speaks verified TLS only: Patroni's REST API and the exporters over HTTPS checked against the
cluster CA, HAProxy's /metrics also wanting the stats credential, etcd a client certificate of that CA. The files
are named relative to prometheus.yml: put the CA there (`python -m cluster ca --out prometheus/ca.crt`), the stats
password in haproxy-stats.password and, for etcd, a certificate and key the CA issued.
"""

from __future__ import annotations

from typing import Any

import yaml

from cluster.plan import PROMETHEUS_CONFIG_DIR, STATS_USER, Plan
from cluster.render.exporter import render_web_config_for
from cluster.render.haproxy import METRICS_PATH
from cluster.render.patroni import MAXIMUM_LAG_ON_FAILOVER
from cluster.render.pgbouncer import RESERVE_POOL_TIMEOUT
from cluster.tls import TlsPaths

RULES_FILE = "alerts.yml"
CA_FILE = "ca.crt"
CLIENT_CERT, CLIENT_KEY = "client.crt", "client.key"  # etcd's client-cert-auth covers /metrics too
STATS_PASSWORD_FILE = "haproxy-stats.password"  # HAProxy's stats password, for its /metrics
SCRAPE_FILE = "prometheus.yml"
PATRONI_JOB = "patroni"
EXPORTER_JOB = "postgres"
HAPROXY_JOB = "haproxy"
ETCD_JOB = "etcd"
PGBOUNCER_JOB = "pgbouncer"
LEADER_CHANGE_WINDOW = "5m"  # a leader change stays visible this long, then the alert resolves by itself
# Shards: the rebalancer's own default threshold (by shard count, 10 %); bytes get more slack since shards of a
# spatially distributed table hold as much as their cells do. `python -m cluster status` judges by the same.
SHARD_COUNT_SKEW = 0.10
SHARD_BYTES_SKEW = 0.50
# Shards are judged only once the worker groups hold this much: a young cluster's few rows are never "skewed".
SKEW_FLOOR_BYTES = 64 * 1024 * 1024
DISK_FREE_RATIO = 0.10  # less free than this on a data directory's filesystem: critical
DISK_TREND_WINDOW, DISK_HORIZON_HOURS = "1h", 4  # full within 4 h at the last hour's rate: warning
WAL_PILE_FACTOR = 3  # pg_wal beyond this many times max_wal_size: WAL is kept for something that is not coming
# A client waiting this long in PgBouncer for a server connection has outwaited the reserve pool too (PgBouncer
# opens it after RESERVE_POOL_TIMEOUT s): the pool is exhausted, not briefly busy.
POOL_WAIT_SECONDS = RESERVE_POOL_TIMEOUT + 2
POOL_WAIT_FOR = "1m"


def exporters_run(plan: Plan) -> bool:
    """The harness always runs the exporters; the Docker stack only with monitoring.enabled."""
    return plan.monitored


def scrape_config(plan: Plan, paths: dict[str, str] | None = None) -> dict[str, Any]:
    """`paths` places the files the config names (CA_FILE, CLIENT_CERT, CLIENT_KEY, STATS_PASSWORD_FILE) elsewhere
    than beside prometheus.yml, as the Prometheus container does."""
    at = {name: name for name in (CA_FILE, CLIENT_CERT, CLIENT_KEY, STATS_PASSWORD_FILE)} | (paths or {})
    patroni = [
        {
            "targets": [m.api.address],
            "labels": {"citus_group": str(m.group), "member": m.name, "postgres": m.postgres.address,
                       "has_standby": str(len(plan.groups[m.group]) > 1).lower()},
        }
        for m in plan.members
    ]
    exporters = [{"targets": [m.exporter.address], "labels": {"citus_group": str(m.group), "member": m.name}}
                 for m in plan.members]
    b = plan.balancer
    jobs = [
        {"job_name": PATRONI_JOB, "metrics_path": "/metrics", "scheme": "https",
         "tls_config": {"ca_file": at[CA_FILE]}, "static_configs": patroni},
        *([{"job_name": EXPORTER_JOB, "metrics_path": "/metrics", "scheme": "https",
            "tls_config": {"ca_file": at[CA_FILE]}, "static_configs": exporters}] if exporters_run(plan) else []),
        {"job_name": HAPROXY_JOB, "metrics_path": METRICS_PATH, "scheme": "https",
         "tls_config": {"ca_file": at[CA_FILE]},
         "basic_auth": {"username": STATS_USER, "password_file": at[STATS_PASSWORD_FILE]},
         "static_configs": [{"targets": [b.stats.address], "labels": {"member": b.name}}]},
        {"job_name": ETCD_JOB, "scheme": "https",
         "tls_config": {"ca_file": at[CA_FILE], "cert_file": at[CLIENT_CERT], "key_file": at[CLIENT_KEY]},
         "static_configs": [{"targets": [e.client.address], "labels": {"member": e.name}} for e in plan.etcd]},
        *pgbouncer_jobs(plan, at[CA_FILE]),
    ]
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": jobs,
    }


def pgbouncer_jobs(plan: Plan, ca_file: str = CA_FILE) -> list[dict[str, Any]]:
    """Every coordinator member's prometheus-pgbouncer-exporter (cluster/render/pgbouncer_exporter.py), over HTTPS
    verified against the cluster CA; none without PgBouncer (pooling off) or where the exporters do not run."""
    targets = [{"targets": [m.pooler.exporter.address], "labels": {"citus_group": str(m.group), "member": m.name}}
               for m in plan.coordinators if m.pooler is not None]
    if not targets or not exporters_run(plan):
        return []
    return [{"job_name": PGBOUNCER_JOB, "metrics_path": "/metrics", "scheme": "https",
             "tls_config": {"ca_file": ca_file}, "static_configs": targets}]


def alert_rules(plan: Plan) -> dict[str, Any]:
    job = f'job="{PATRONI_JOB}"'
    rules = [
        _alert("CitusMemberDown", f"up{{{job}}} == 0", "30s", "critical",
               "{{ $labels.member }} (group {{ $labels.citus_group }}) does not answer: its Patroni /metrics is "
               "unreachable (member stopped, crashed or cut off)"),
        _alert("CitusGroupWithoutLeader", f"max by (citus_group) (patroni_primary{{{job}}}) < 1", "30s", "critical",
               "group {{ $labels.citus_group }} has no leader: its writes fail until Patroni promotes a standby"),
        _alert("CitusLeaderChanged",
               f"sum by (citus_group) (changes(patroni_primary{{{job}}}[{LEADER_CHANGE_WINDOW}])) > 0", "0s",
               "warning", f"group {{{{ $labels.citus_group }}}} changed leader in the last {LEADER_CHANGE_WINDOW} "
               "(failover or switchover); check why (`python -m cluster status`)"),
        _alert("CitusGroupWithoutStandby",
               f'max by (citus_group) (patroni_primary{{{job},has_standby="true"}}) == 1 unless on (citus_group) '
               f"max by (citus_group) (patroni_postgres_streaming{{{job}}}) == 1", "30s", "critical",
               "group {{ $labels.citus_group }} has no streaming standby: one more failure loses it, and new "
               "writes have no synchronous copy"),
        _alert("CitusStandbyLag",
               f"(max by (citus_group) (patroni_xlog_location{{{job}}}) - on (citus_group) group_right () "
               f"(patroni_xlog_replayed_location{{{job}}} > 0)) > {MAXIMUM_LAG_ON_FAILOVER}", "1m", "warning",
               "{{ $labels.member }} replays {{ $value | humanize1024 }}B behind its leader, more than "
               "failover allows (maximum_lag_on_failover): Patroni would not promote it"),
        _alert("CitusMaintenanceMode", f"patroni_is_paused{{{job}}} == 1", "10m", "warning",
               "Patroni is paused on {{ $labels.member }}: no automatic failover"),
    ]
    if exporters_run(plan):
        rules += exporter_alerts(plan)
    if pgbouncer_jobs(plan):
        rules += pgbouncer_alerts(plan)
    return {"groups": [{"name": f"citus-cluster-{plan.scope}", "rules": rules}]}


def exporter_alerts(plan: Plan) -> list[dict[str, Any]]:
    """Alerts on the exporters' Citus queries (cluster/render/exporter.py)."""
    job, patroni = f'job="{EXPORTER_JOB}"', f'job="{PATRONI_JOB}"'
    # pg_dist_node's primaries, relabelled as Patroni's targets are: group id and host:port as Citus registers it.
    registered = (f'label_replace(label_replace(citus_node_primary{{{job}}} == 1, "citus_group", "$1", "group_id", '
                  '"(.*)"), "postgres", "$1", "node", "(.*)")')
    workers = f'{{{job},role="primary",group_id!="0"}}'
    rules = [
        _alert("CitusDistNodeOutOfStep",
               f"max by (citus_group, member, postgres) (patroni_primary{{{patroni}}} == 1) "
               f"unless on (citus_group, postgres) {registered} "
               f"and on () count(citus_node_primary{{{job}}}) > 0", "30s", "critical",
               "pg_dist_node does not name {{ $labels.member }} ({{ $labels.postgres }}), Patroni's leader of group "
               "{{ $labels.citus_group }}, as the group's primary: Citus sends the group's queries elsewhere "
               "(Patroni's coordinator updates it each heartbeat; if it stays, run `python -m cluster provision`)"),
        _alert("CitusShardCountSkew",
               f"(max(citus_node_shards{workers}) - min(citus_node_shards{workers})) "
               f"/ avg(citus_node_shards{workers}) > {SHARD_COUNT_SKEW}", "15m", "warning",
               "worker groups hold unequal shard counts (spread {{ $value | humanizePercentage }}): run "
               "`python -m cluster provision --rebalance`"),
        _alert("CitusShardBytesSkew",
               f"(max(citus_node_bytes{workers}) - min(citus_node_bytes{workers})) "
               f"/ avg(citus_node_bytes{workers}) > {SHARD_BYTES_SKEW} "
               f"and on () sum(citus_node_bytes{workers}) > {SKEW_FLOOR_BYTES}", "30m", "warning",
               "worker groups hold unequal bytes (spread {{ $value | humanizePercentage }}): hot cells or tenants; "
               "rebalance by disk size (rebalance_strategy 'by_disk_size')"),
        _alert("CitusDiskFilling",
               f"citus_disk_available_bytes{{{job}}} / citus_disk_total_bytes{{{job}}} < {DISK_FREE_RATIO}", "5m",
               "critical", "{{ $labels.member }}'s data directory has {{ $value | humanizePercentage }} of its disk "
               "free: PostgreSQL stops when it is full"),
        _alert("CitusDiskFullSoon",
               f"predict_linear(citus_disk_available_bytes{{{job}}}[{DISK_TREND_WINDOW}], {DISK_HORIZON_HOURS} * 3600)"
               " < 0", "15m", "warning",
               "{{ $labels.member }}'s data directory fills within " f"{DISK_HORIZON_HOURS} hours at the rate of the "
               f"last {DISK_TREND_WINDOW}"),
        _alert("CitusWalFillingDisk",
               f"citus_wal_bytes{{{job}}} > {WAL_PILE_FACTOR} * citus_wal_max_bytes{{{job}}}", "10m", "critical",
               "{{ $labels.member }} keeps {{ $value | humanize1024 }}B of WAL, more than "
               f"{WAL_PILE_FACTOR} x max_wal_size: a failing archive or a stuck replication slot is filling its "
               "disk"),
    ]
    if plan.config.backups.enabled:
        rules.append(_alert(
            "CitusArchiveFailing", f"citus_archiver_failing{{{job}}} == 1", "5m", "critical",
            "{{ $labels.member }} cannot archive WAL (pgBackRest archive-push fails): point-in-time recovery "
            "stops at the last archived segment and pg_wal grows until it succeeds"))
    return rules


def pgbouncer_alerts(plan: Plan) -> list[dict[str, Any]]:
    """Alerts on the PgBouncer exporters' pool metrics (pgbouncer_pool_max_wait_seconds: how long the oldest
    waiting client of a pool has waited for a server connection)."""
    job = f'job="{PGBOUNCER_JOB}"'
    return [
        _alert("PgBouncerClientsWaiting",
               f"max by (citus_group, member, database, user) (pgbouncer_pool_max_wait_seconds{{{job}}}) "
               f">= {POOL_WAIT_SECONDS}", POOL_WAIT_FOR, "warning",
               "the oldest waiting client of {{ $labels.user }}@{{ $labels.database }} in {{ $labels.member }}'s "
               "PgBouncer has waited {{ $value }} s for a server connection: the pool is exhausted (raise "
               "pooling.poolSize within max_connections, or find the long transactions holding it)"),
    ]


def _alert(name: str, expr: str, after: str, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": after, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


def render_prometheus(plan: Plan, paths: dict[str, str] | None = None) -> dict[str, str]:
    """The two files, by name: prometheus.yml and the rules it loads (the TLS files and the stats password
    file it names are the user's to put beside them, unless `paths` says where they are)."""
    return {SCRAPE_FILE: _yaml(scrape_config(plan, paths)), RULES_FILE: _yaml(alert_rules(plan))}


WEB_FILE = "web.yml"


def container_files(plan: Plan) -> dict[str, str]:
    """The Prometheus container's files by name inside PROMETHEUS_CONFIG_DIR: the scrape config pointing at the
    TLS files its own certificate is uploaded as (DOCKER_TLS_DIR) and the password file beside it, the rules, and
    its HTTPS web config (the same exporter-toolkit format as the exporters')."""
    paths = TlsPaths(plan.prometheus_tls_dir)
    files = render_prometheus(plan, {CA_FILE: paths.ca, CLIENT_CERT: paths.cert, CLIENT_KEY: paths.key,
                                     STATS_PASSWORD_FILE: f"{PROMETHEUS_CONFIG_DIR}/{STATS_PASSWORD_FILE}"})
    return {**files, WEB_FILE: render_web_config_for(paths)}


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=1000)
