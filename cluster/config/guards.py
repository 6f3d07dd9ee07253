"""Rules that keep a stack's config from undoing what the cluster guarantees: the application role, the
PostgreSQL passthrough (plan-owned, authentication-weakening and secret-leaking settings, memory), the grid,
CPU limits, the Docker host and the network. Pure: each takes the typed config and returns Problems.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from cluster.config.models import DEFAULT_MAX_CONNECTIONS, MANAGED_PARAMETERS, ClusterConfig, ParameterValue
from cluster.roles import reserved_role


def role_problems(config: ClusterConfig, key: str = "citus.appUser") -> list[tuple[str, str]]:
    """The application role must be a role of its own: reusing postgres or replicator would give the app DSN
    superuser (or replication) rights and rewrite the password Patroni and Citus log in with."""
    name = config.citus.app_user
    if not reserved_role(name):
        return []
    return [(key, f"{name!r} is a role the cluster, PostgreSQL or Citus already owns (postgres, replicator, "
                  "patroni, admin, pgbouncer_auth, public, pg_*, citus, citus_*); the application would log in "
                  "with its rights. Choose a name of its own, e.g. app.")]


def _text(value: ParameterValue) -> str:
    """A setting's value as PostgreSQL reads it: booleans as on/off, text trimmed and lower-cased."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip().lower()


def _is_off(value: ParameterValue) -> bool:
    return _text(value) in ("off", "false", "no", "0", "n", "f")


def _number(value: ParameterValue) -> float | None:
    try:
        return float(_text(value))
    except ValueError:
        return None


# Settings that weaken authentication or write secrets to the server log: name -> (is it unsafe?, why + fix).
# ALTER ROLE ... PASSWORD is DDL, so statement logging at ddl/mod/all (or every-statement duration/sample
# logging, or parse-tree debugging) would copy a password into the log of every member.
UNSAFE_PARAMETERS: dict[str, tuple[Callable[[ParameterValue], bool], str]] = {
    "password_encryption": (
        lambda v: _text(v) != "scram-sha-256",
        "stores passwords as MD5 hashes that a stolen pg_authid turns into logins; remove it (scram-sha-256 is set).",
    ),
    "ssl": (_is_off, "turns TLS off and sends passwords and data in clear; remove it."),
    "log_statement": (
        lambda v: _text(v) != "none",
        "logs DDL, and ALTER/CREATE ROLE ... PASSWORD is DDL: passwords would land in the server log. Remove it "
        "(use log_min_duration_statement > 0 for slow statements, or pg_stat_statements).",
    ),
    "log_min_duration_statement": (
        lambda v: _number(v) == 0,
        "0 logs every statement with its text, including role passwords; use a threshold such as 250 (ms).",
    ),
    "log_min_duration_sample": (
        lambda v: _number(v) == 0,
        "0 logs sampled statements with their text, including role passwords; use a threshold above 0 or -1.",
    ),
    "log_transaction_sample_rate": (
        lambda v: (_number(v) or 0) > 0,
        "logs every statement of sampled transactions, including role passwords; remove it.",
    ),
    **{
        name: (lambda v: not _is_off(v), "writes parse trees, with every literal (passwords too), to the log.")
        for name in ("debug_print_parse", "debug_print_rewritten", "debug_print_plan")
    },
}


def parameter_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    """Passthrough settings the plan owns, that weaken authentication or leak secrets, or are not setting names.
    Names arrive canonical (trimmed, lower-case: see Postgresql._canonical_names), as PostgreSQL matches them."""
    problems = []
    for name, value in config.postgresql.parameters.items():
        key = f"postgresql.parameters.{name}"
        if name in MANAGED_PARAMETERS:
            problems.append((key, f"is managed by {MANAGED_PARAMETERS[name]}; remove it from the passthrough."))
        elif name in UNSAFE_PARAMETERS and UNSAFE_PARAMETERS[name][0](value):
            problems.append((key, f"{value!r} {UNSAFE_PARAMETERS[name][1]}"))
        elif not _is_guc_name(name):
            problems.append((key, "is not a PostgreSQL setting name (letters, digits, _ and one dot)."))
    return problems


def _is_guc_name(name: str) -> bool:
    parts = name.split(".")
    return 1 <= len(parts) <= 2 and all(
        p and (p[0].isalpha() or p[0] == "_") and all(c.isalnum() or c == "_" for c in p) for p in parts
    )


_UNITS_KB = {"b": 1 / 1024, "kb": 1, "mb": 1024, "gb": 1024**2, "tb": 1024**3}
# Base unit (in kB) of a memory setting given as a bare number: shared_buffers and wal_buffers count 8 kB pages.
MEMORY_SETTINGS_KB = {"shared_buffers": 8, "wal_buffers": 8, "work_mem": 1, "maintenance_work_mem": 1}
DEFAULT_MEMORY_KB = {"shared_buffers": 128 * 1024, "wal_buffers": 4 * 1024, "work_mem": 4 * 1024,
                     "maintenance_work_mem": 64 * 1024}


def memory_kb(name: str, value: ParameterValue) -> float | None:
    """A memory setting in kB ('256MB', '1GB', 32768 pages), or None when PostgreSQL would reject it anyway."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", _text(value))
    if match is None:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        return number * MEMORY_SETTINGS_KB[name]
    return number * _UNITS_KB[unit] if unit in _UNITS_KB else None


def memory_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    """A database container must hold shared memory plus working room, or the kernel kills it under load:
    shared_buffers at most half of resources.database.memoryMb, and shared memory + one sort + one maintenance
    job within the limit. Checks what the members will run: the user's values over those derived from the
    config (cluster.tuning), PostgreSQL's defaults for the rest."""
    from cluster.tuning import effective_parameters  # tuning reads the models, as this module does

    params = effective_parameters(config)
    kb = {name: (memory_kb(name, params[name]) if name in params else None) or DEFAULT_MEMORY_KB[name]
          for name in MEMORY_SETTINGS_KB}
    limit_mb = config.resources.database.memory_mb
    shared_mb = kb["shared_buffers"] / 1024
    needed_mb = sum(kb.values()) / 1024
    if shared_mb > limit_mb / 2:
        return [("resources.database.memoryMb", f"{limit_mb} MiB cannot hold shared_buffers = {shared_mb:.0f} MiB "
                 "(at most half the limit leaves room for connections and the page cache). Raise "
                 f"resources.database.memoryMb to at least {2 * shared_mb:.0f} or lower "
                 "postgresql.parameters.shared_buffers.")]
    if needed_mb > limit_mb:
        return [("resources.database.memoryMb", f"{limit_mb} MiB is below shared_buffers + wal_buffers + work_mem "
                 f"+ maintenance_work_mem = {needed_mb:.0f} MiB. Raise it or lower those postgresql.parameters.")]
    return []


MIN_DOCKER_CPUS = 0.01  # Docker's --cpus granularity: NanoCpus below 10,000,000 are refused


def cpu_problems(config: ClusterConfig, host_cpus: int | None) -> list[tuple[str, str]]:
    """CPU limits Docker refuses: below 0.01, or more CPUs than the (local) Docker host has."""
    problems = []
    for service in ("database", "etcd", "haproxy"):
        cpus = getattr(config.resources, service).cpus
        key = f"resources.{service}.cpus"
        if cpus is None:
            continue
        if cpus < MIN_DOCKER_CPUS:
            problems.append((key, f"{cpus} is below Docker's minimum of {MIN_DOCKER_CPUS}; raise it or unset it."))
        elif host_cpus is not None and cpus > host_cpus:
            problems.append((key, f"{cpus} is more than the {host_cpus} CPUs of this Docker host, which Docker "
                                  f"refuses; use at most {host_cpus} or unset it."))
    return problems


def docker_host_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    """tcp:// on 2375 (or with no port) is Docker's plain-HTTP API: whoever reaches it is root on that host."""
    host = config.docker_host
    if not host or not host.startswith("tcp://"):
        return []
    port = urlsplit(host).port
    if port == 2376:
        return []
    return [("dockerHost", f"{host} is Docker's API without TLS (port {port or 'default 2375'}): anyone on the path "
                           "can run containers as root there. Use ssh://user@host, or tcp://host:2376 with TLS "
                           "(DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH).")]


# Docker's default address pools (daemon.json default-address-pools unset): docker0 takes 172.17.0.0/16, new
# networks take the next free /16 of 172.17-172.31 and then /20s of 192.168.0.0/16. A subnet there collides
# with docker0 or with whichever network Docker hands that range to first.
DOCKER_DEFAULT_POOLS = (ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.0.0/15"),
                        ipaddress.IPv4Network("172.20.0.0/14"), ipaddress.IPv4Network("172.24.0.0/13"),
                        ipaddress.IPv4Network("192.168.0.0/16"))


def docker_pool_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    subnet = config.network.subnet
    pools = [str(p) for p in DOCKER_DEFAULT_POOLS if subnet.overlaps(p)]
    if not pools:
        return []
    return [("network.subnet", f"{subnet} overlaps Docker's default address pools ({', '.join(pools)}; docker0 "
                               "is 172.17.0.0/16), so it collides with docker0 or another Docker network. Use a "
                               "range in 10.0.0.0/8 or 172.16.0.0/16, e.g. 10.94.0.0/24.")]


# A grid cell wider than this (about 111 km) holds a whole city: its rows all land on one shard.
MAX_USEFUL_CELL_DEGREES = 1.0


def grid_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    """Grid sizes that make the spatial key meaningless: fewer cells than shards (some shards never get a row)
    or cells so large that one city is one cell (no spread at all). Only for the spatial strategy."""
    distribution = config.citus.distribution
    if distribution.strategy != "spatial":
        return []
    degrees, shards = distribution.cell_degrees, config.citus.shard_count
    cells = round(360 / degrees) * round(180 / degrees)
    key = "citus.distribution.cellDegrees"
    if cells < shards:
        return [(key, f"{degrees} makes {cells} cells for citus.shardCount = {shards} shards, so some shards would "
                      "never hold a row. Use smaller cells (e.g. 0.04) or fewer shards.")]
    if degrees > MAX_USEFUL_CELL_DEGREES:
        return [(key, f"{degrees} degrees is a cell of over {degrees * 111:.0f} km: a whole city falls in one cell "
                      f"and so on one shard. Use at most {MAX_USEFUL_CELL_DEGREES} (e.g. 0.04), or "
                      "strategy: vehicle.")]
    return []


# Connections a coordinator keeps for everything but PgBouncer: Patroni, replication, Citus's maintenance daemon
# and rebalancer, superuser_reserved_connections (3).
POOLER_HEADROOM = 20


def pooling_problems(config: ClusterConfig) -> list[tuple[str, str]]:
    """PgBouncer's pools must fit in the coordinator's max_connections with room for Patroni and replication,
    or a busy pool locks the operators (and Patroni) out of their own coordinator."""
    pooling = config.pooling
    if not pooling.enabled:
        return []
    raw = config.postgresql.parameters.get("max_connections", DEFAULT_MAX_CONNECTIONS)
    limit = _number(raw)
    if limit is None:
        return []
    needed = pooling.server_connections + POOLER_HEADROOM
    if needed <= limit:
        return []
    fit = max(1, (int(limit) - POOLER_HEADROOM - 1) // 2 - pooling.reserve_pool_size)
    return [("pooling.poolSize", f"{pooling.pool_size} (with reservePoolSize {pooling.reserve_pool_size}) lets "
             f"PgBouncer open {pooling.server_connections} connections to the coordinator: 2 x (poolSize + "
             f"reservePoolSize) + 1, plus {POOLER_HEADROOM} kept for Patroni and replication, is {needed}, over "
             f"max_connections = {int(limit)}. Lower pooling.poolSize to at most {fit}, or raise "
             "postgresql.parameters.max_connections.")]
