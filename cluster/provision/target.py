"""What provisioning talks to: DSNs and Patroni URLs as seen from the user's machine, plus the in-cluster
addresses Citus must register. Plain data, built from the plan, so it can cross into a dynamic provider.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from cluster.config import ClusterConfig
from cluster.plan import SUPERUSER, Plan

# What sql/ reads from the stack config: each is set as `citus_cluster.<name>` in the session that applies the
# migrations; the migration that uses one records it, and a later change is refused (it would need the data
# moved). Name -> the stack key it comes from.
SCHEMA_SETTINGS: dict[str, str] = {
    "distribution_strategy": "citus.distribution.strategy",
    "cell_degrees": "citus.distribution.cellDegrees",
}


def schema_settings(config: ClusterConfig) -> dict[str, str]:
    distribution = config.citus.distribution
    return {"distribution_strategy": distribution.strategy, "cell_degrees": repr(distribution.cell_degrees)}


@dataclass(frozen=True)
class MemberTarget:
    name: str
    group: int
    patroni_url: str  # published REST API, e.g. http://127.0.0.1:18008
    dsn: str  # published PostgreSQL, superuser
    host: str  # in-cluster address Citus registers (container name, or 127.0.0.1 in the harness)
    port: int


@dataclass(frozen=True)
class ClusterTarget:
    rw_dsn: str
    members: tuple[MemberTarget, ...]
    database: str
    app_user: str
    app_password: str
    shard_transfer_mode: str = "block_writes"
    schema_settings: dict[str, str] = field(default_factory=lambda: schema_settings(ClusterConfig()))

    @property
    def groups(self) -> list[int]:
        return sorted({m.group for m in self.members})

    @property
    def worker_groups(self) -> list[int]:
        return [g for g in self.groups if g != 0]

    def members_of(self, group: int) -> list[MemberTarget]:
        return [m for m in self.members if m.group == group]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterTarget:
        members = tuple(MemberTarget(**m) for m in data["members"])
        return cls(**{**data, "members": members})

    def __repr__(self) -> str:  # DSNs and the app password stay out of logs
        return f"ClusterTarget(groups={self.groups}, members={[m.name for m in self.members]})"


def target_from_plan(plan: Plan, superuser_password: str, app_password: str) -> ClusterTarget:
    host, database = plan.client_host, plan.config.citus.database
    secret = quote(superuser_password, safe="")
    return ClusterTarget(
        rw_dsn=plan.dsn("read-write", superuser_password),
        members=tuple(
            MemberTarget(
                name=m.name,
                group=m.group,
                patroni_url=f"http://{host}:{m.published_api}",
                dsn=f"postgresql://{SUPERUSER}:{secret}@{host}:{m.published_postgres}/{database}",
                host=m.postgres.host,
                port=m.postgres.port,
            )
            for m in plan.members
        ),
        database=database,
        app_user=plan.config.citus.app_user,
        app_password=app_password,
        schema_settings=schema_settings(plan.config),
    )
