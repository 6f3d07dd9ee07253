"""Provisioning: what the dynamic provider wraps, usable alone (`python -m cluster provision`).

Health gate -> Citus registration -> extensions and app role -> schema (sql/) -> placement (rebalance onto
new groups, drain groups that are leaving). Each step is idempotent, so re-running is always safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import psycopg

from cluster.provision import citus, dcs, migrations, roles
from cluster.provision.citus import ProvisionError
from cluster.provision.health import ClusterNotHealthy, check, wait_healthy
from cluster.provision.migrations import Migration, SchemaDrift, read_migrations
from cluster.provision.target import ClusterTarget, MemberTarget, target_from_plan
from cluster.render.patroni import TTL

__all__ = [
    "ClusterNotHealthy",
    "ClusterTarget",
    "MemberTarget",
    "Migration",
    "ProvisionError",
    "ProvisionResult",
    "SchemaDrift",
    "check",
    "drain",
    "provision",
    "read_migrations",
    "retire",
    "target_from_plan",
    "wait_healthy",
]
log = logging.getLogger("cluster.provision")


@dataclass
class ProvisionResult:
    citus_version: str
    nodes: list[dict] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # every migration recorded in the cluster
    newly_applied: list[str] = field(default_factory=list)  # the ones this run applied
    rebalance: str = "not needed"
    shard_counts: dict[str, int] = field(default_factory=dict)
    passwords_changed: list[str] = field(default_factory=list)  # roles and pg_dist_authinfo rows brought in step
    app_tables: list[str] = field(default_factory=list)  # what the application role may read and write
    pending_restart: list[str] = field(default_factory=list)  # members a changed DCS setting waits on

    def outputs(self) -> dict:
        return {
            "citus_version": self.citus_version,
            "nodes": self.nodes,
            "applied_migrations": self.applied,
            "shard_counts": self.shard_counts,
        }


def provision(
    target: ClusterTarget,
    files: list[Migration],
    *,
    rebalance: bool = False,
    health_timeout: float = 300.0,
    previous_superuser_passwords: Sequence[str] = (),
) -> ProvisionResult:
    """Bring a running cluster to its declared state; returns what it found and did.

    A superuser password that changed in the config is rotated: provisioning logs in with the previous one
    (`previous_superuser_passwords`, e.g. the provider's old inputs) and sets the new one everywhere first.
    """
    # PgBouncer serves the read-write port: its auth_user must exist before anyone logs in through it.
    pooler_changed = roles.ensure_pooler_auth(target, previous_superuser_passwords, timeout=health_timeout)
    login = roles.login_password(target, previous_superuser_passwords)
    report = wait_healthy(replace(target, rw_dsn=roles.with_password(target.rw_dsn, login)), timeout=health_timeout)
    changed = pooler_changed + roles.sync_group_roles(target, report.leaders, login)
    changed += roles.sync_monitoring_role(target, report.leaders)
    with citus.connect(target.rw_dsn) as conn:
        result = ProvisionResult(citus_version=citus.require_citus(conn), passwords_changed=changed)
        before = {row.group for row in citus.nodes(conn)}
        result.registered = citus.register(conn, target, report.leaders)
        citus.ensure_extensions(conn, target)
        result.newly_applied = migrations.apply(conn, files, target.schema_settings)
        result.app_tables = roles.ensure_app_role(conn, target)
        result.passwords_changed += roles.sync_app_authinfo(target, report.leaders)
        _forget_stale_groups(conn, target)
        added = set(target.worker_groups) - before
        if rebalance or added:
            result.rebalance = citus.rebalance(conn, target.shard_transfer_mode)
        result.applied = sorted(migrations.applied(conn))
        result.nodes = [r.summary() for r in citus.nodes(conn)]
        result.shard_counts = citus.shard_counts(conn)
    result.pending_restart = dcs.sync(target, report.leaders)
    return result


def _forget_stale_groups(conn, target: ClusterTarget) -> None:  # type: ignore[no-untyped-def]
    """Groups registered but no longer planned: unregister them if drained, refuse if they still hold data."""
    for group in sorted({r.group for r in citus.nodes(conn)} - set(target.groups)):
        log.info("group %s is not in the plan any more: unregistering it", group)
        citus.remove_group(conn, group)


def drain(target: ClusterTarget, groups: list[int]) -> dict[int, int]:
    """Move all shards off worker `groups` (before their members are removed). Refuses to empty the cluster."""
    keep = [g for g in target.worker_groups if g not in groups]
    if not keep:
        raise ProvisionError(
            f"refusing to remove worker groups {groups}: no worker group would remain. Keep workers.groups >= 1."
        )
    with citus.connect(target.rw_dsn) as conn:
        return {g: citus.drain_group(conn, g, target.shard_transfer_mode) for g in groups}


def retire(target: ClusterTarget, groups: list[int], settle: float = 25.0, timeout: float = 180.0) -> list[str]:
    """Unregister drained groups once their members are gone.

    Patroni's coordinator re-adds a group for as long as the group's leader key lives in etcd (up to ttl after
    its members stopped), and may hold pg_dist_node locked after the group's leader shut down (see
    citus.release_stale_patroni_lock); so remove, wait past that, and check that nothing came back.
    """
    deadline = time.monotonic() + timeout
    removed: list[str] = []
    try:
        conn = citus.connect(target.rw_dsn)
    except psycopg.OperationalError:
        log.info("coordinator unreachable: the cluster is being destroyed, nothing to unregister")
        return removed
    with conn:
        conn.execute("SET lock_timeout = '5s'")
        while time.monotonic() < deadline:
            citus.release_stale_patroni_lock(conn, older_than=TTL)
            try:
                for group in groups:
                    removed += citus.remove_group(conn, group)
            except psycopg.errors.LockNotAvailable:
                log.info("pg_dist_node is locked (Patroni's transaction for the stopped leader); retrying")
                continue
            time.sleep(settle)
            if not [r for r in citus.nodes(conn) if r.group in groups]:
                return removed
    raise ProvisionError(
        f"worker groups {groups} are still in pg_dist_node after {timeout:.0f} s: are their members still up? "
        "Check with `python -m cluster provision --check`."
    )
