"""Fixtures that start the real-process harness (cluster/local) once and share it.

Each test that uses the shared harness gets it clean automatically (as Citus's own regression harness does):
before the test the fixture notes what the cluster holds, after it puts back what the test changed: processes
that are down or frozen are started again, worker groups the test added are drained and removed, and tables,
views, sequences, databases and migration records the test created are dropped. No test restores by hand, and
a failing test cannot leave the next one on a changed cluster.

Where the harness cannot run (a laptop without PostgreSQL, etcd or HAProxy) its tests skip with the reason;
CI sets CITUS_CLUSTER_REQUIRE_HARNESS=1 so a broken install fails there instead of skipping. Tests marked
`citus` skip, with the reason, where the citus extension is not installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cluster.local.harness import Harness, citus_missing, harness_config, local_postgres
from cluster.local.processes import HarnessError
from cluster.provision import drain, provision, read_migrations, retire, wait_healthy
from cluster.provision.migrations import TABLE as MIGRATIONS_TABLE

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def harness_missing() -> str | None:
    """Why the harness cannot run on this machine, or None."""
    tools = ("etcd", "haproxy", "prometheus-postgres-exporter", "prometheus-pgbouncer-exporter")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    try:
        local_postgres()
    except HarnessError:
        missing.append("postgresql-15")
    if not missing:
        return None
    return f"the real-process harness needs {', '.join(missing)} (.ci/run installs them)"


def citus_skip_reason() -> str | None:
    if reason := harness_missing():
        return reason
    return citus_missing(local_postgres()[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = citus_skip_reason()
    if reason is None:
        return
    for item in items:
        if "citus" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"Citus test skipped: {reason}"))


def start_harness(overrides: dict | None = None) -> Harness:
    reason = harness_missing()
    if reason:
        if os.environ.get("CITUS_CLUSTER_REQUIRE_HARNESS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Harness.create(harness_config(overrides)).up()


@pytest.fixture(scope="session")
def shared_harness() -> Iterator[Harness]:
    """The default harness cluster (coordinator pair, two worker pairs, one etcd), started once per session and
    provisioned as `make up` leaves a cluster (with Citus: registered, schema applied)."""
    cluster = start_harness()
    try:
        if cluster.citus:
            provision(cluster.target, read_migrations(SQL_DIR))
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def harness(shared_harness: Harness) -> Iterator[Harness]:
    """The shared cluster, put back after the test as it was before (see the module docstring)."""
    yield from kept_clean(shared_harness)


def kept_clean(cluster: Harness) -> Iterator[Harness]:
    """Yield `cluster` to one test and put back afterwards what the test changed; for any shared harness."""
    before = Snapshot.take(cluster)
    yield cluster
    before.restore(cluster)


# What a test may add and the fixture removes, by pg_class.relkind, in drop order (views before their tables).
RELATION_KINDS = {"v": "VIEW", "m": "MATERIALIZED VIEW", "r": "TABLE", "p": "TABLE", "S": "SEQUENCE"}


@dataclass(frozen=True)
class Snapshot:
    """What the cluster held when a test started."""

    groups: int
    databases: frozenset[str]
    relations: frozenset[tuple[str, str]]  # (kind, qualified name) in the cluster's database
    migrations: frozenset[str]

    @classmethod
    def take(cls, h: Harness) -> Snapshot:
        with psycopg.connect(h.dsn(database="postgres"), autocommit=True) as admin:
            databases = {r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()}
        with psycopg.connect(h.dsn(), autocommit=True) as conn:
            return cls(len(h.plan.groups), frozenset(databases), frozenset(_relations(conn)),
                       frozenset(_migrations(conn)))

    def restore(self, h: Harness) -> None:
        """Put back processes, groups and objects; each step only acts where the test changed something."""
        h.revive()
        wait_healthy(h.target, timeout=120)
        while len(h.plan.groups) > self.groups:
            group = len(h.plan.groups) - 1
            if h.citus:
                drain(h.target, [group])
            h.remove_last_group()
            if h.citus:
                retire(h.target, [group], settle=3)
        # Straight to the coordinator leader's PostgreSQL: a backend PgBouncer kept for the test's own sessions
        # may hold Citus's cached connection to a worker's former leader, and the first DDL through it fails
        # ("failure on connection marked as essential") after a worker failover.
        leader = h.member_dsn(h.leader(0))
        with psycopg.connect(leader, autocommit=True) as conn:
            added = _relations(conn) - self.relations
            for kind in RELATION_KINDS:
                for rel_kind, name in sorted(added):
                    if rel_kind == kind:
                        statement = f"DROP {RELATION_KINDS[kind]} IF EXISTS {{}} CASCADE"
                        conn.execute(sql.SQL(statement).format(sql.Identifier(*name.split("."))))
            for name in _migrations(conn) - self.migrations:
                conn.execute(f"DELETE FROM {MIGRATIONS_TABLE} WHERE name = %s", (name,))
        with psycopg.connect(leader, dbname="postgres", autocommit=True) as admin:
            now = {r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()}
            for database in sorted(now - self.databases):
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def _relations(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT c.relkind::text, n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = ANY(%s)", (list(RELATION_KINDS),)).fetchall()
    return {(kind, name) for kind, name in rows}


def _migrations(conn: psycopg.Connection) -> set[str]:
    if conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone() == (None,):
        return set()
    return {r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()}
