"""What provisioning talks to: DSNs and Patroni URLs as seen from the user's machine, plus the in-cluster
addresses Citus must register. Plain data, built from the plan, so it can cross into a dynamic provider.

Also the one place a cluster is named from outside the Pulumi program: a deployed stack (its plan plus the
passwords in `pulumi stack output`), a local cluster's directory, or DSN + Patroni URLs by hand. The product
CLI and the benchmarks both resolve through `resolve_target`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from cluster.config import ClusterConfig, load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.errors import UsageError
from cluster.plan import Plan, build_plan
from cluster.provision.rest import rest_json
from cluster.render.patroni import dcs_config

# What sql/ reads from the stack config: each is set as `citus_cluster.<name>` in the session that applies the
# migrations; the migration that uses one records it, and a later change is refused (it would need the data
# moved). Name -> the stack key it comes from.
STATS_PASSWORD_OUTPUT = "haproxy_stats_password"  # the secret stack output `status` reads the stats page with

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
    patroni_url: str  # published REST API, e.g. https://127.0.0.1:18008
    dsn: str  # published PostgreSQL, superuser, verified TLS
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
    ca_file: str | None = None  # the cluster CA on this machine: Patroni's HTTPS is verified against it
    schema_settings: dict[str, str] = field(default_factory=lambda: schema_settings(ClusterConfig()))
    replication_password: str = ""  # empty: provisioning leaves the replication role's password alone
    rest_password: str = ""  # Patroni REST API (unsafe endpoints); empty: the DCS config is not synced
    dcs: dict[str, dict[str, Any]] = field(default_factory=dict)  # Citus group (as text) -> Patroni DCS config
    stats_url: str = ""  # HAProxy's stats page (`status` reads its CSV); empty when not known
    stats_password: str = ""  # empty where not needed (provisioning); `status` resolves it
    monitoring_password: str = ""  # the exporters' role; empty: provisioning leaves that role alone
    ro_dsn: str = ""  # HAProxy's read-only listener, superuser, with its session options; empty when not known
    pooler_password: str = ""  # PgBouncer's auth_user; empty: no pooler (pooling off, or a hand-made target)

    @property
    def superuser_password(self) -> str:
        return password_of(self.rw_dsn)

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


def target_from_plan(
    plan: Plan,
    superuser_password: str,
    app_password: str,
    replication_password: str = "",
    rest_password: str = "",
    stats_password: str = "",
    monitoring_password: str = "",
    pooler_password: str = "",
) -> ClusterTarget:
    """What provisioning needs of `plan`; the replication and REST passwords turn on rotating the replication
    role and keeping Patroni's dynamic configuration in step (the deployer passes them; a hand-made target
    may not know them); the stats password lets `status` read HAProxy's view."""
    database = plan.config.citus.database
    return ClusterTarget(
        rw_dsn=plan.dsn("read-write", superuser_password),
        ro_dsn=plan.dsn("read-only", superuser_password),
        members=tuple(
            MemberTarget(
                name=m.name,
                group=m.group,
                patroni_url=f"https://{m.published_host}:{m.published_api}",
                dsn=plan.member_dsn(m, superuser_password),
                host=m.postgres.host,
                port=m.postgres.port,
            )
            for m in plan.members
        ),
        database=database,
        app_user=plan.config.citus.app_user,
        app_password=app_password,
        schema_settings=schema_settings(plan.config),
        replication_password=replication_password,
        rest_password=rest_password,
        dcs={str(group): dcs_config(plan, group) for group in range(len(plan.groups))},
        ca_file=plan.client_ca_file,
        stats_url=plan.stats_url,
        stats_password=stats_password,
        monitoring_password=monitoring_password,
        pooler_password=pooler_password if plan.pooled else "",
    )


def install_ca(path: str, pem: str) -> None:
    """Write the cluster CA (a public certificate) to `path` unless it already holds exactly that."""
    file = Path(path)
    if file.exists() and file.read_text() == pem:
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(pem)
    file.chmod(0o644)


def resolve_target(
    *,
    stack: str | None = None,
    local: Path | None = None,
    dsn: str | None = None,
    patroni: list[str] | None = None,
    app_user: str = "app",
    app_password: str = "",
) -> ClusterTarget:
    """The cluster named by exactly one of `stack`, `local` (a local cluster's directory) or `dsn` + `patroni`."""
    if patroni and not dsn:
        raise UsageError("--patroni goes with --dsn")
    if stack:
        return stack_target(stack)
    if local:
        return local_target(local)
    if not dsn:
        raise UsageError("name a cluster: --stack NAME, --harness DIR or --dsn URL with --patroni GROUP=URL")
    if not patroni:
        raise UsageError("--dsn needs at least one --patroni GROUP=URL (one per member)")
    return manual_target(dsn, patroni, app_user, app_password)


def local_target(directory: Path) -> ClusterTarget:
    """The target a local cluster (`python -m cluster local up`) recorded in its state file."""
    from cluster.local.state import read_state

    state = read_state(directory)
    return replace(ClusterTarget.from_dict(state["target"]), stats_password=state.get("passwords", {}).get("stats", ""))


def stack_target(stack: str) -> ClusterTarget:
    """A deployed stack: its plan from Pulumi.<stack>.yaml, its passwords from the stack's secret outputs."""
    loaded = load_config(*read_stack_file(stack_file(stack)))
    outputs = pulumi_outputs(stack)
    admin = admin_dsn(outputs)
    if admin is None or "app_dsn" not in outputs:
        raise UsageError(f"stack {stack} has no admin_dsn or app_dsn output: was `make up` run for it?")
    return target_from_plan(build_plan(loaded.config), password_of(admin), password_of(outputs["app_dsn"]),
                            stats_password=outputs.get(STATS_PASSWORD_OUTPUT, ""))


def admin_dsn(outputs: dict[str, Any]) -> str | None:
    """The superuser DSN of a stack's outputs: admin_dsn, or rw_dsn for a stack last deployed before it."""
    return outputs.get("admin_dsn") or outputs.get("rw_dsn")


def pulumi_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --show-secrets --json`; the one place the product runs pulumi."""
    if shutil.which("pulumi") is None:
        raise UsageError("the Pulumi CLI is not on PATH; use --dsn URL --patroni GROUP=URL … instead")
    done = subprocess.run(["pulumi", "stack", "output", "--show-secrets", "--json", "--stack", stack],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise UsageError(f"`pulumi stack output --stack {stack}` failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def password_of(dsn: str) -> str:
    return unquote(urlsplit(dsn).password or "")


def manual_target(dsn: str, patroni: list[str], app_user: str, app_password: str) -> ClusterTarget:
    """The CA that verifies the DSN (its sslrootcert) also verifies the Patroni URLs."""
    ca_file = parse_qs(urlsplit(dsn).query).get("sslrootcert", [None])[0]
    members = []
    for spec in patroni:
        group, sep, url = spec.partition("=")
        if not sep or not group.isdigit():
            raise UsageError(f"--patroni {spec!r}: expected GROUP=URL, e.g. 0=https://127.0.0.1:18008")
        url = url.rstrip("/")
        name, host, port = member_identity(url, ca_file)
        parts = urlsplit(dsn)
        netloc = parts.netloc.rsplit("@", 1)[0] + f"@{host}:{port}"
        members.append(MemberTarget(name, int(group), url, urlunsplit(parts._replace(netloc=netloc)), host, port))
    database = urlsplit(dsn).path.lstrip("/") or "postgres"
    return ClusterTarget(rw_dsn=dsn, members=tuple(members), database=database, app_user=app_user,
                         app_password=app_password, ca_file=ca_file)


def member_identity(url: str, ca_file: str | None = None) -> tuple[str, str, int]:
    """(name, host, port) of the member behind a Patroni URL, from its own /patroni and its group's /cluster."""
    try:
        name = rest_json(f"{url}/patroni", timeout=5, ca_file=ca_file)["patroni"]["name"]
        cluster = rest_json(f"{url}/cluster", timeout=5, ca_file=ca_file)
        member = next(m for m in cluster["members"] if m["name"] == name)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise UsageError(f"cannot read member identity from {url}/patroni and /cluster: {exc}") from None
    return name, member["host"], int(member["port"])
