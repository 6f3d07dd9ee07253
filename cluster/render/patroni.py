"""One Patroni configuration per member, in two files Patroni merges from its config directory.

`10-patroni.yml` holds everything but passwords and is safe to show, diff and commit; `90-secrets.yml` holds
the credentials only and travels as a secret. Patroni loads every *.yml of the directory in name order.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cluster.config.models import DCS_PARAMETERS, DEFAULT_MAX_CONNECTIONS
from cluster.plan import REPLICATION_USER, RESTAPI_USER, SSLMODE, SUPERUSER, Member, Plan
from cluster.render.pgbackrest import archive_parameters, patroni_postgresql
from cluster.secrets import Passwords
from cluster.tls import TlsPaths
from cluster.tuning import derived_parameters

CONFIG_FILE = "10-patroni.yml"
SECRETS_FILE = "90-secrets.yml"
DCS_NAMESPACE = "/service/"  # where every Patroni keeps its keys in etcd: <namespace><scope>/<group>/...
PID_FILE = "patroni.pid"  # written by whoever starts Patroni (entrypoint, harness): a rotation's SIGHUP reads it
PGPASS_FILE = "pgpass"  # written by Patroni (replication and rewind credentials) in the member's config dir

# Failover timings (seconds). Patroni refuses ttl < 20. A leader cut off from etcd must demote before its lease
# can pass to another member (no split brain). Patroni's rule loop_wait + 2 * retry_timeout <= ttl is not enough
# in practice: measured with retry_timeout 9 (partition drill, coordinator leader cut from etcd and its standby),
# the first loop after the cut ran 12 s (etcd client timeouts, machine-list refreshes), the next waited out the
# 9 s retry deadline, and the failsafe check (POST /failsafe to the cut standby: 2 s timeout, one retry) took 4 s:
# it demoted 25 s after the cut, 2.5 s after the standby had been promoted (its writes were held by synchronous
# replication, none acknowledged, but two members claimed to be primary). OVERRUN_ALLOWANCE covers those extras;
# retry_timeout 4 leaves ~5 s before the earliest lease expiry. With failsafe_mode on, a shorter retry_timeout costs
# little: an etcd hiccup past it leads to the failsafe check, not to a demotion, while the members reach each other.
# loop_wait 1 (not 2): a partitioned leader's lease is noticed a second sooner.
TTL = 20
LOOP_WAIT = 1
RETRY_TIMEOUT = 4
OVERRUN_ALLOWANCE = 6  # first-loop excess (~1.33 x retry_timeout measured, bounded by 3) + failsafe check (4)
MAXIMUM_LAG_ON_FAILOVER = 1024 * 1024  # bytes a replica may trail and still be promoted
# etcd losing its quorum does not stop the database: a leader that still reaches every member of its group
# (REST API) keeps leading; without it every leader demotes until etcd heals (issue 13's drills measured both).
FAILSAFE_MODE = True
# Synchronous replication: Patroni's classic mode (one synchronous standby, named in etcd's /sync key; only a member
# named there may be promoted, so a failover never picks one that missed an acknowledged commit). Not "quorum":
# there a promoted standby starts with synchronous_standby_names = ANY 1 (old leader) and its commits wait until
# Patroni has lowered the quorum, one step per loop. Partition drill, coordinator leader cut from etcd and its
# standby: first write on the new leader 22.6-25.8 s with quorum (past ttl + 5), 22.2-22.9 s with this mode, which
# promotes with no synchronous standby and names one as soon as a replica streams.
SYNCHRONOUS_MODE = True
# How long a demoting primary may take to stop before Patroni kills it (Patroni's default: forever). Citus's
# maintenance daemon ignores the shutdown request while it waits for a synchronous standby to confirm a
# commit; when that standby is behind a partition, the old leader hung in "Demoting self (offline)" and never
# rejoined (partition drill, coordinator leader cut off). One ttl: past it another member leads anyway.
PRIMARY_STOP_TIMEOUT = TTL

# Two-phase commit recovery. Citus's maintenance daemon resolves prepared transactions left on a worker by asking
# the node pg_dist_node names for its pg_prepared_xacts and deleting the commit records it finds no prepared
# transaction for. A node in recovery (a demoted leader, a standby about to be promoted) lists none, although
# it holds them: the records go, and the next recovery rolls those transactions back on the real leader, so a
# write the coordinator had acknowledged disappears (seen once: etcd losing its quorum with failsafe_mode off,
# every leader demoted, the coordinator promoted before a worker). Citus's periodic recovery is switched off
# here; pg_cron runs sql/0004's guarded recovery on the coordinator leader every minute instead, which first
# checks that every primary in pg_dist_node is out of recovery.
TWO_PHASE_RECOVERY = {
    "citus.recover_2pc_interval": -1,
    "shared_preload_libraries": "pg_cron",  # Patroni's Citus mode puts citus first
    "cron.use_background_workers": "on",  # jobs run in the server: no password, no pg_hba rule for them
}

# Citus's own connections between nodes. A peer behind a partition drops packets instead of refusing them:
# without these a statement waits for the kernel's retransmissions (~15 min) and every distributed write
# piles up behind it (drilled: no write for 2 min after one worker leader was cut off). With them a statement
# touching an unreachable node fails after 5 s and the rest carry on. Kept apart from sslmode, which TLS owns.
NODE_CONNINFO_TIMEOUTS = "tcp_user_timeout=5000"
NODE_CONNECTION_TIMEOUT_MS = 5000  # citus.node_connection_timeout (default 30 s): dialling a node that is cut off




def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, nested dicts merged key by key (neither argument changes)."""
    merged = json.loads(json.dumps(base))
    for key, value in extra.items():
        merged[key] = deep_merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def render_patroni_with(plan: Plan, member: Member, overrides: dict[str, Any]) -> str:
    """render_patroni with `overrides` merged in: what a restore starts a member with (its bootstrap from the
    repository), in the harness and in a Docker stack alike."""
    doc = deep_merge(yaml.safe_load(render_patroni(plan, member)), overrides)
    return yaml.safe_dump(doc, sort_keys=False)


def config_path(member: Member) -> str:
    """Patroni's config file of `member` (the harness writes it there, the Docker stack uploads it there)."""
    return f"{member.config_dir}/{CONFIG_FILE}"

def dcs_prefix(plan: Plan, group: int) -> str:
    """Where Patroni keeps group `group`'s keys in etcd in Citus mode: <namespace><scope>/<group>/ (one scope, a
    directory per group)."""
    return f"{DCS_NAMESPACE}{plan.scope}/{group}/"

def patroni_config(plan: Plan, member: Member) -> dict[str, Any]:
    """The member's Patroni settings without credentials."""
    config = plan.config
    local = split_parameters(postgres_parameters(plan))[0]
    tls = TlsPaths(member.tls_dir)
    return {
        "scope": plan.scope,
        "name": member.name,
        "namespace": DCS_NAMESPACE,
        "log": {"level": "INFO"},
        "restapi": {"listen": member.api.bind, "connect_address": member.api.address, **restapi_tls(member)},
        "ctl": {"insecure": False, "cacert": tls.ca, "certfile": tls.cert, "keyfile": tls.key},
        # etcd admits only clients with a certificate of the cluster CA: the member's own (clientAuth) one.
        "etcd3": {
            "hosts": [e.client.address for e in plan.etcd],
            "protocol": "https",
            "cacert": tls.ca,
            "cert": tls.cert,
            "key": tls.key,
        },
        "citus": {"group": member.group, "database": config.citus.database},
        "bootstrap": {
            "dcs": dcs_config(plan, member.group),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": member.postgres.bind,
            "connect_address": member.postgres.address,
            "data_dir": member.data_dir,
            "bin_dir": plan.bin_dir,
            "pgpass": pgpass_path(member),
            # A new replica copies its leader at once instead of waiting for a spread checkpoint (minutes).
            "basebackup": [{"checkpoint": "fast"}],
            # Replication, pg_rewind and Patroni's own connections verify the other end like any client.
            "authentication": {
                "superuser": {"username": SUPERUSER, **client_tls(member)},
                "replication": {"username": REPLICATION_USER, **client_tls(member)},
            },
            "parameters": {**local, **archive_parameters(plan, member), **tls_parameters(member)},
            "pg_hba": pg_hba(plan),
            **patroni_postgresql(plan, member),  # backups: archive, replicas from the repository
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def dcs_config(plan: Plan, group: int) -> dict[str, Any]:
    """Group `group`'s dynamic configuration: written to etcd when the group bootstraps, and what provisioning
    PATCHes into Patroni's /config on a running cluster so a changed value applies there too."""
    return {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "failsafe_mode": FAILSAFE_MODE,
        "primary_stop_timeout": PRIMARY_STOP_TIMEOUT,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        "synchronous_mode": SYNCHRONOUS_MODE if plan.synchronous(group) else False,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": split_parameters(postgres_parameters(plan))[1],
        },
    }


def split_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(member-file settings, DCS-only settings): Patroni ignores the latter in a member's own file."""
    local = {k: v for k, v in parameters.items() if k not in DCS_PARAMETERS}
    return local, {k: v for k, v in parameters.items() if k in DCS_PARAMETERS}


def postgres_parameters(plan: Plan) -> dict[str, Any]:
    """Settings every member runs with: the product's fixed defaults, then the settings derived from the config
    (cluster.tuning: executor pool, JIT, parallelism, memory), then the user's passthrough on top, which always
    wins (both DCS-only and member settings; split_parameters says where each goes)."""
    config = plan.config
    return {
        "password_encryption": "scram-sha-256",
        "unix_socket_directories": plan.socket_dir,
        "wal_log_hints": "on",  # pg_rewind needs it (data checksums also satisfy it; belt and braces)
        "max_connections": DEFAULT_MAX_CONNECTIONS,
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "citus.shard_count": config.citus.shard_count,
        "citus.node_connection_timeout": NODE_CONNECTION_TIMEOUT_MS,
        **TWO_PHASE_RECOVERY,
        "cron.database_name": config.citus.database,
        **derived_parameters(config),
        **config.postgresql.parameters,
    }


def restapi_tls(member: Member) -> dict[str, Any]:
    """Patroni's REST API over HTTPS only; unsafe endpoints still need restapi.authentication (basic auth)."""
    tls = TlsPaths(member.tls_dir)
    return {"certfile": tls.cert, "keyfile": tls.key, "cafile": tls.ca}


def client_tls(member: Member) -> dict[str, str]:
    """libpq settings for connections a member makes to other members (replication, rewind, Patroni)."""
    return {"sslmode": SSLMODE, "sslrootcert": TlsPaths(member.tls_dir).ca}


def tls_parameters(member: Member) -> dict[str, Any]:
    """Server TLS with the member's certificate, and Citus dialling other nodes verified the same way.

    Applied after the user's passthrough: these are what every DSN and pg_hba rule rely on."""
    tls = TlsPaths(member.tls_dir)
    conninfo = " ".join([*(f"{k}={v}" for k, v in client_tls(member).items()), NODE_CONNINFO_TIMEOUTS])
    return {
        "ssl": "on",
        "ssl_cert_file": tls.cert,
        "ssl_key_file": tls.key,
        "ssl_ca_file": tls.ca,
        "ssl_min_protocol_version": "TLSv1.2",
        "citus.node_conninfo": conninfo,
    }


def pg_hba(plan: Plan) -> list[str]:
    """SCRAM over TLS from the cluster network only; anything without TLS refused; the OS user postgres via
    the local socket. (`all` does not match replication connections in pg_hba, hence their own reject.)"""
    cidr = plan.allowed_cidr
    return [
        f"local all {SUPERUSER} peer",
        "local all all scram-sha-256",
        "hostnossl all all 0.0.0.0/0 reject",
        "hostnossl all all ::/0 reject",
        "hostnossl replication all 0.0.0.0/0 reject",
        "hostnossl replication all ::/0 reject",
        f"hostssl replication {REPLICATION_USER} {cidr} scram-sha-256",
        f"hostssl all all {cidr} scram-sha-256",
    ]


def patroni_secrets(passwords: Passwords[str]) -> dict[str, Any]:
    """The credentials part; merged over patroni_config by Patroni itself."""
    return {
        "restapi": {"authentication": {"username": RESTAPI_USER, "password": passwords.rest_api}},
        "ctl": {"authentication": {"username": RESTAPI_USER, "password": passwords.rest_api}},
        "postgresql": {
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": passwords.superuser},
                "replication": {"username": REPLICATION_USER, "password": passwords.replication},
            }
        },
    }


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def render_patroni(plan: Plan, member: Member) -> str:
    return f"# Patroni settings of {member.name} (credentials live in {SECRETS_FILE}).\n" + to_yaml(
        patroni_config(plan, member)
    )


def pgpass_path(member: Member) -> str:
    """Where Patroni writes the replication and rewind credentials it connects with (from the secrets file)."""
    return f"{member.config_dir}/{PGPASS_FILE}"


def pid_path(member: Member) -> str:
    return f"{member.config_dir}/{PID_FILE}"


def render_patroni_secrets(passwords: Passwords[str]) -> str:
    return to_yaml(patroni_secrets(passwords))
