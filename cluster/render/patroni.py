"""One Patroni configuration per member, in two files Patroni merges from its config directory.

`10-patroni.yml` holds everything but passwords and is safe to show, diff and commit; `90-secrets.yml` holds
the credentials only and travels as a secret. Patroni loads every *.yml of the directory in name order.
"""

from __future__ import annotations

from typing import Any

import yaml

from cluster.plan import REPLICATION_USER, RESTAPI_USER, SUPERUSER, Member, Plan
from cluster.secrets import Passwords

CONFIG_FILE = "10-patroni.yml"
SECRETS_FILE = "90-secrets.yml"

# Failover timings (seconds). Patroni refuses ttl < 20; loop_wait + 2 * retry_timeout must stay below ttl
# so a leader that cannot reach etcd demotes itself before its lease can pass to another member.
TTL = 20
LOOP_WAIT = 2
RETRY_TIMEOUT = 9
MAXIMUM_LAG_ON_FAILOVER = 1024 * 1024  # bytes a replica may trail and still be promoted


def patroni_config(plan: Plan, member: Member) -> dict[str, Any]:
    """The member's Patroni settings without credentials."""
    config = plan.config
    return {
        "scope": plan.scope,
        "name": member.name,
        "namespace": "/service/",
        "log": {"level": "INFO"},
        "restapi": {"listen": member.api.bind, "connect_address": member.api.address},
        "etcd3": {"hosts": [e.client.address for e in plan.etcd]},
        "citus": {"group": member.group, "database": config.citus.database},
        "bootstrap": {
            "dcs": {
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
                "synchronous_mode": "quorum" if plan.synchronous(member.group) else False,
                "postgresql": {"use_pg_rewind": True, "use_slots": True},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": member.postgres.bind,
            "connect_address": member.postgres.address,
            "data_dir": member.data_dir,
            "bin_dir": plan.bin_dir,
            "pgpass": f"{member.config_dir}/pgpass",
            # A new replica copies its leader at once instead of waiting for a spread checkpoint (minutes).
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER},
                "replication": {"username": REPLICATION_USER},
            },
            "parameters": postgres_parameters(plan),
            "pg_hba": pg_hba(plan),
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def postgres_parameters(plan: Plan) -> dict[str, Any]:
    """Settings every member runs with: the product's defaults, then the user's passthrough on top."""
    config = plan.config
    return {
        "password_encryption": "scram-sha-256",
        "unix_socket_directories": plan.socket_dir,
        "wal_log_hints": "on",  # pg_rewind needs it (data checksums also satisfy it; belt and braces)
        "max_connections": 200,
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "citus.shard_count": config.citus.shard_count,
        **config.postgresql.parameters,
    }


def pg_hba(plan: Plan) -> list[str]:
    """Password (SCRAM) access from the cluster network only; the OS user postgres via the local socket."""
    cidr = plan.allowed_cidr
    return [
        f"local all {SUPERUSER} peer",
        "local all all scram-sha-256",
        f"host replication {REPLICATION_USER} {cidr} scram-sha-256",
        f"host all all {cidr} scram-sha-256",
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


def render_patroni_secrets(passwords: Passwords[str]) -> str:
    return to_yaml(patroni_secrets(passwords))
