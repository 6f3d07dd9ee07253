"""The cluster's fixed role names: the one place they are spelled.

Both the config rules (which refuse them as the application role) and the plan (which renders them into
Patroni's files) read them here, so the config package never needs the plan.
"""

from __future__ import annotations

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
RESTAPI_USER = "patroni"  # Patroni REST API basic auth; not a database role, but a name users mistake for one
STATS_USER = "admin"  # HAProxy stats page (and its Prometheus /metrics)
MONITORING_USER = "monitor"  # prometheus-postgres-exporter: pg_monitor, read-only
# PgBouncer's auth_user: logs in to the coordinator only to look up other roles' SCRAM verifiers through
# POOLER_SCHEMA.POOLER_AUTH_FUNCTION (SECURITY DEFINER, owned by the superuser); it can read nothing else.
POOLER_USER = "pgbouncer_auth"
POOLER_SCHEMA = "pgbouncer"
POOLER_AUTH_FUNCTION = "get_auth"

# Names PostgreSQL or Citus keep for themselves: `public` and `none` are refused by CREATE ROLE, pg_* are the
# predefined roles, and citus / citus_* are Citus's own namespace.
RESERVED_PREFIXES: tuple[str, ...] = ("pg_", "citus_")
RESERVED_NAMES: frozenset[str] = frozenset(
    {SUPERUSER, REPLICATION_USER, RESTAPI_USER, STATS_USER, MONITORING_USER, POOLER_USER, "public", "none", "citus",
     "current_user",
     "session_user", "current_role"}
)


def reserved_role(name: str) -> bool:
    """True when `name` is a role the cluster (or PostgreSQL, or Citus) already owns."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)
