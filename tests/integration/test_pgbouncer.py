"""PgBouncer on real processes (issue 15 item 1): a thousand clients through the read-write port on a coordinator
whose max_connections stays at 100, and a coordinator leader failover with PgBouncer in the path.

Both run on a cluster of their own (the harness defaults: max_connections 100, pooling on), as the application
role, so the transaction-pooled path is the one exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from benchmarks import pooling
from benchmarks.ha import HarnessCluster, run_drill
from benchmarks.steps import load
from benchmarks.workload import Dataset
from cluster.local.harness import Harness, pooler_name
from cluster.local.processes import raise_open_files
from cluster.provision import provision, read_migrations
from cluster.render.patroni import TTL
from tests.integration.conftest import SQL_DIR, start_harness

pytestmark = [pytest.mark.slow, pytest.mark.citus]
CLIENTS = 1000
MAX_CONNECTIONS = 100  # the harness's coordinator setting (DEFAULT_CONFIG); must stay small
HARD_KILL_BOUND = TTL + 2  # as tests/integration/test_ha.py


@pytest.fixture(scope="module")
def cluster() -> Iterator[Harness]:
    raise_open_files()  # this process holds the thousand client sockets; the servers inherit the limit
    harness = start_harness()
    try:
        if harness.citus:
            provision(harness.target, read_migrations(SQL_DIR))
            load(harness.dsn(), Dataset(5000), parallel=2)
        yield harness
    finally:
        harness.down()


def app_rw_dsn(h: Harness) -> str:
    return h.plan.dsn("read-write", h.passwords.app, user=h.config.citus.app_user)


def test_every_coordinator_runs_pgbouncer_and_haproxy_sends_read_write_there(cluster: Harness) -> None:
    assert cluster.plan.pooled
    haproxy = open(cluster.plan.balancer.config_path).read()
    for m in cluster.plan.coordinators:
        assert m.pooler is not None and cluster.procs[pooler_name(m)].alive()
        assert f"server {m.name} {m.pooler.endpoint.address} check port {m.api.port}" in haproxy
    # The auth file holds the auth_user's credential only, readable by the server user alone.
    auth = cluster.plan.coordinators[0].pooler.auth_file  # type: ignore[union-attr]
    import os

    assert oct(os.stat(auth).st_mode & 0o777) == "0o600"
    assert cluster.passwords.app not in open(auth).read() and cluster.passwords.superuser not in open(auth).read()


def test_a_thousand_clients_run_the_seeds_queries_through_read_write(cluster: Harness) -> None:
    leader = cluster.member_dsn(cluster.leader(0))
    seen: dict[str, Any] = {}

    def count_backends() -> None:  # while all thousand sessions are open
        with psycopg.connect(leader, autocommit=True) as conn:
            seen["max_connections"] = int(conn.execute("SHOW max_connections").fetchone()[0])
            seen["backends"] = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                            "'client backend'").fetchone()[0]
            seen["app_backends"] = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                                (cluster.config.citus.app_user,)).fetchone()[0]

    result = pooling.serve(app_rw_dsn(cluster), CLIENTS, during=count_backends)
    print(f"{CLIENTS} clients: {result.to_dict()}; on the leader while all were open: {seen}")
    assert result.errors == {}, result.errors
    assert (result.connected, result.served) == (CLIENTS, CLIENTS)
    assert seen["max_connections"] <= MAX_CONNECTIONS
    pool = cluster.config.pooling
    assert seen["app_backends"] <= pool.pool_size + pool.reserve_pool_size, seen
    assert seen["backends"] < seen["max_connections"], seen


class AppDrill(HarnessCluster):
    """The HA drill writing as the application role (transaction-pooled by PgBouncer); the drill's table is made,
    counted and dropped as the superuser."""

    def __init__(self, harness: Harness) -> None:
        super().__init__(harness)
        self.admin_dsn = self.rw_dsn
        self.rw_dsn = app_rw_dsn(harness)


def test_coordinator_leader_kill_with_pgbouncer_loses_no_acknowledged_write(cluster: Harness) -> None:
    drill = AppDrill(cluster)
    result = run_drill(drill, "coordinator-leader-kill")
    print(result.summary())
    assert result.acknowledged > 100, result.summary()
    assert result.lost == 0, f"acknowledged writes lost: {result.lost_ids[:20]}"
    assert result.found == result.acknowledged
    assert result.first_write_after is not None and result.first_write_after <= HARD_KILL_BOUND, result.summary()
    assert result.new_leader not in (None, result.victim)
    assert drill.role(result.victim) == "replica"
    assert result.phases["after recovery"]["write_success_pct"] == 100.0
    # The killed member's PgBouncer died with it (one container) and came back with it.
    victim = cluster.member(result.victim)
    assert cluster.procs[pooler_name(victim)].alive()
