"""Every metrics endpoint of the running cluster, scraped for real: each member's Patroni /metrics and
prometheus-postgres-exporter (with the rendered Citus queries, logged in as the monitoring role), each coordinator
member's prometheus-pgbouncer-exporter, HAProxy's built-in exporter; then a real Prometheus on the rendered scrape
config finds every target up."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from cluster.local.harness import Harness, pgbouncer_exporter_name
from cluster.plan import STATS_USER
from cluster.provision.rest import tls_context
from cluster.render.haproxy import PRIMARY_BACKEND
from tests.support.prometheus import api, parse_metrics, running_prometheus

pytestmark = [pytest.mark.citus, pytest.mark.slow]

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str, ca_file: str, auth: tuple[str, str] | None = None) -> Samples:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=15, context=tls_context(ca_file)) as response:
        return parse_metrics(response.read().decode())


def values(samples: Samples, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(lab, v) for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())]


def exporter_samples(h: Harness, member: str, timeout: float = 60.0) -> Samples:
    """The member's exporter once it has logged in (it may have started before provisioning made its role)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(h.exporter_url(member), h.ca_file)
        if [v for _, v in values(samples, "pg_up")] == [1.0]:
            return samples
        assert time.monotonic() < deadline, f"{member}'s exporter never logged in: pg_up {values(samples, 'pg_up')}"
        time.sleep(1)


def test_every_endpoint_serves_sane_citus_metrics(harness: Harness) -> None:
    leaders = {g: harness.leader(g) for g in range(len(harness.plan.groups))}
    coordinator = leaders[0]
    by_member = {m.name: exporter_samples(harness, m.name) for m in harness.plan.members}

    # Cluster-wide rows come from the coordinator leader only: no series is doubled by the other exporters.
    assert all(not values(s, "citus_node_shards") for name, s in by_member.items() if name != coordinator)
    nodes = by_member[coordinator]
    for group in range(1, len(harness.plan.groups)):
        primary = [(lab, v) for lab, v in values(nodes, "citus_node_primary", group_id=str(group)) if v == 1]
        assert [lab["node"] for lab, _ in primary] == [harness.member(leaders[group]).postgres.address], primary
        node = primary[0][0]["node"]
        shards = values(nodes, "citus_node_shards", node=node, role="primary")
        size = values(nodes, "citus_node_bytes", node=node, role="primary")
        assert shards and shards[0][1] > 0, f"group {group}: shards {shards}"
        assert size and size[0][1] > 0, f"group {group}: bytes {size}"
        print(f"group {group}: {node} {shards[0][1]:.0f} shards, {size[0][1]:.0f} bytes")

    # Patroni's own /metrics agrees on who leads; that is what the pg_dist_node alert compares.
    for group, leader in leaders.items():
        patroni = scrape(f"{harness.patroni_url(leader)}/metrics", harness.ca_file)
        assert [v for _, v in values(patroni, "patroni_primary")] == [1.0], (group, leader)

    # Per member: replication from each leader to its standby, WAL and the archiver, the backends.
    for group, leader in leaders.items():
        standbys = [m.name for m in harness.plan.groups[group] if m.name != leader]
        lag = values(by_member[leader], "citus_replication_lag_bytes")
        assert sorted(lab["standby"] for lab, _ in lag) == sorted(standbys), lag
        assert all(0 <= v < 64 * 1024 * 1024 for _, v in lag), lag
        for name in standbys:
            assert values(by_member[name], "citus_standby_in_recovery")[0][1] == 1
            assert values(by_member[name], "citus_standby_streaming")[0][1] == 1
    # Every rendered query ran as the monitoring role: a query it may not run would show here (with its error).
    failed = {name: harness.procs[harness.exporter_name(name)].tail() for name, samples in by_member.items()
              if values(samples, "pg_exporter_last_scrape_error") != [({}, 0.0)]}
    assert not failed, "\n".join(f"{name}:\n{log}" for name, log in failed.items())
    for name, samples in by_member.items():
        assert values(samples, "citus_wal_bytes")[0][1] > 0, name
        assert values(samples, "citus_wal_max_bytes")[0][1] >= 32 * 1024 * 1024, name
        assert {lab["internal"] for lab, _ in values(samples, "citus_backends_connections")} == {"true", "false"}
        assert values(samples, "citus_archiver_failing")[0][1] == 0, name
        free = values(samples, "citus_disk_available_bytes")[0][1]
        total = values(samples, "citus_disk_total_bytes")[0][1]
        assert 0 < free < total, (name, free, total)

    # HAProxy's built-in exporter, behind the stats credential, sees the coordinator leader as the one server up.
    stats = f"https://{harness.plan.balancer.stats.address}/metrics"
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(stats, harness.ca_file)
    assert refused.value.code == 401
    haproxy = scrape(stats, harness.ca_file, (STATS_USER, harness.passwords.stats))
    up = {lab["server"]: v for lab, v in values(haproxy, "haproxy_server_status", proxy=PRIMARY_BACKEND)
          if lab.get("state") == "UP"}
    assert {name for name, v in up.items() if v == 1} == {coordinator}, up


def test_prometheus_scrapes_every_rendered_target(harness: Harness, tmp_path: Path) -> None:
    """The rendered scrape config is right: a real Prometheus reaches every target (TLS, auth, paths) and the
    pg_dist_node check finds Citus in step with Patroni."""
    with running_prometheus(harness, tmp_path, interval=None) as url:  # the rendered intervals (5 s), unchanged
        deadline = time.monotonic() + 90
        while True:
            targets = api(url, "targets")["activeTargets"]
            down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
            if (targets and not down) or time.monotonic() > deadline:  # empty until the config is loaded
                break
            time.sleep(1)
        assert not down, down
        jobs = {t["labels"]["job"] for t in targets}
        assert jobs == {"patroni", "postgres", "haproxy", "etcd", "pgbouncer"}, jobs
        assert len(targets) == (2 * len(harness.plan.members) + 1 + len(harness.plan.etcd)
                                + len(harness.plan.coordinators))
        time.sleep(12)  # a few evaluations
        registered = api(url, "query", query="citus_node_primary == 1")["result"]
        assert len(registered) == len(harness.plan.groups), registered
        out_of_step = api(url, "query", query='ALERTS{alertname="CitusDistNodeOutOfStep"}')["result"]
        assert out_of_step == [], out_of_step


def test_pgbouncer_exporter_counts_the_clients_of_the_leaders_pgbouncer(harness: Harness) -> None:
    """Clients held open through the read-write port sit in the coordinator leader's PgBouncer: its exporter
    (logged in to PgBouncer's admin console as the monitoring role, over verified TLS) counts them per pool, and
    the standby's exporter answers too (its PgBouncer idles)."""
    leader = harness.leader(0)
    database = harness.config.citus.database
    held = 3
    clients = [psycopg.connect(harness.dsn(), autocommit=True, prepare_threshold=None) for _ in range(held)]
    try:
        for conn in clients:
            assert conn.execute("SELECT count(*) FROM pg_dist_node").fetchone()[0] > 0
        samples = scrape(harness.pgbouncer_exporter_url(leader), harness.ca_file)
        active = values(samples, "pgbouncer_active_clients", database=database, user="postgres")
        queries = values(samples, "pgbouncer_queries_total", database=database)
        waiting = values(samples, "pgbouncer_pool_max_wait_seconds", database=database, user="postgres")
        print(f"{leader}'s PgBouncer: active clients {active}, queries {queries}, max wait {waiting}")
        assert active and active[0][1] >= held, (active, harness.procs[pgbouncer_exporter_name(
            harness.member(leader))].tail())
        assert queries and queries[0][1] >= held, queries
        assert waiting == [({"database": database, "user": "postgres"}, 0.0)], waiting
        assert values(samples, "pgbouncer_pool_size", database=database)[0][1] > 0
    finally:
        for conn in clients:
            conn.close()
    for member in harness.plan.coordinators:
        if member.name != leader:
            standby = scrape(harness.pgbouncer_exporter_url(member.name), harness.ca_file)
            assert values(standby, "pgbouncer_used_clients")[0][1] >= 1  # its exporter's own session
