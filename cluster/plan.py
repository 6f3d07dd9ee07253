"""The topology as data: who runs where, on which address and port, with which name. Pure, no I/O.

A plan is built from a validated ClusterConfig and a Layout. The layout is the only thing that differs
between the Docker deployment (container DNS names, fixed in-container ports, paths inside the image) and
the test harness (127.0.0.1, free ports, a temp dir, the local PostgreSQL): every renderer reads the plan,
so both consumers run the very same files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import quote

from cluster.config import ClusterConfig

PATRONI_VENV = "/opt/patroni"
PATRONI_CONFIG_DIR = "/etc/patroni"
DOCKER_DATA_MOUNT = "/var/lib/postgresql/data"
ETCD_DATA_MOUNT = "/etcd-data"
HAPROXY_CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"
DOCKER_DNS = "127.0.0.11:53"

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
RESTAPI_USER = "patroni"
STATS_USER = "admin"

Listener = Literal["read-write", "read-only", "any-node"]


@dataclass(frozen=True)
class Endpoint:
    """How a process is reached inside the cluster (host:port) and what it binds to."""

    host: str
    port: int
    listen: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bind(self) -> str:
        return f"{self.listen}:{self.port}"


@dataclass(frozen=True)
class Member:
    """One PostgreSQL + Patroni member of a Citus group."""

    name: str
    group: int
    index: int  # position inside its group; index 0 is the intended first leader
    ordinal: int  # position across the cluster; picks its published ports
    postgres: Endpoint
    api: Endpoint
    data_dir: str
    config_dir: str
    volume: str
    published_postgres: int
    published_api: int

    @property
    def role(self) -> Literal["coordinator", "worker"]:
        return group_role(self.group)

    @property
    def intended_role(self) -> Literal["leader", "replica"]:
        return "leader" if self.index == 0 else "replica"


@dataclass(frozen=True)
class EtcdMember:
    name: str
    client: Endpoint
    peer: Endpoint
    data_dir: str
    volume: str


@dataclass(frozen=True)
class Balancer:
    """HAProxy: read-write, read-only and stats listeners (bind side) and their published host ports."""

    name: str
    read_write: Endpoint
    read_only: Endpoint
    stats: Endpoint
    any_node: Endpoint | None = None  # every group's leader (Citus query from any node), when configured
    published: dict[str, int] = field(default_factory=dict)
    config_path: str = HAPROXY_CONFIG_PATH


@dataclass(frozen=True)
class DsnOutput:
    """A DSN stack output: its name, the HAProxy listener it dials and whose credential it carries."""

    name: str
    listener: Listener
    credential: str  # a cluster.secrets.Passwords field


@dataclass(frozen=True)
class Plan:
    config: ClusterConfig
    layout: Literal["docker", "local"]
    network: str
    bin_dir: str
    allowed_cidr: str  # pg_hba admits superuser, replication and app traffic from here only
    socket_dir: str
    dns_resolver: str | None  # HAProxy resolves member names through it (Docker's embedded DNS)
    client_host: str  # where clients outside the cluster reach the published ports
    etcd: tuple[EtcdMember, ...]
    groups: tuple[tuple[Member, ...], ...]  # index = Citus group id; 0 = coordinator
    balancer: Balancer

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(m for group in self.groups for m in group)

    @property
    def coordinators(self) -> tuple[Member, ...]:
        return self.groups[0]

    @property
    def scope(self) -> str:
        """Patroni cluster name; Citus mode requires the same scope for every group."""
        return self.config.name

    def dsn(self, role: Listener, password: str, user: str = SUPERUSER) -> str:
        """The URL a client on the user's machine uses to reach HAProxy's `role` listener."""
        port, database = self.balancer.published[role], self.config.citus.database
        return f"postgresql://{user}:{quote(password, safe='')}@{self.client_host}:{port}/{database}"

    def user(self, credential: str) -> str:
        """The role that logs in with credential `credential` (a cluster.secrets.Passwords field)."""
        return self.config.citus.app_user if credential == "app" else SUPERUSER

    def dsn_outputs(self) -> tuple[DsnOutput, ...]:
        """The DSNs the stack exports: one list for the component, `render`'s plan.json and the docs."""
        outputs = [
            DsnOutput("rw_dsn", "read-write", "superuser"),
            DsnOutput("ro_dsn", "read-only", "superuser"),
            DsnOutput("app_dsn", "read-write", "app"),
        ]
        if self.balancer.any_node is not None:
            outputs.append(DsnOutput("any_node_dsn", "any-node", "superuser"))
        return tuple(outputs)

    @property
    def stats_url(self) -> str:
        return f"http://{self.client_host}:{self.balancer.published['stats']}/"

    def node_summaries(self) -> list[dict[str, object]]:
        """What each database member is meant to be, and where the user's machine reaches it."""
        return [
            {
                "name": m.name,
                "group": m.group,
                "role": m.role,
                "intended": m.intended_role,
                "postgres": f"{self.client_host}:{m.published_postgres}",
                "patroni": f"http://{self.client_host}:{m.published_api}",
            }
            for m in self.members
        ]

    def synchronous(self, group: int) -> bool:
        """Quorum commit for a group: on by default wherever the group has a standby to confirm."""
        wanted = self.config.replication.synchronous
        return len(self.groups[group]) > 1 and wanted is not False


class Layout(Protocol):
    """Decides addresses, ports and paths; everything else in the plan is layout-independent."""

    kind: Literal["docker", "local"]

    def bin_dir(self, postgres_major: int) -> str: ...
    def endpoint(self, name: str, role: str) -> Endpoint: ...
    def member_dirs(self, name: str) -> tuple[str, str]: ...  # (data_dir, patroni config dir)
    def etcd_dir(self, name: str) -> str: ...
    def allowed_cidr(self, config: ClusterConfig) -> str: ...
    def socket_dir(self) -> str: ...
    def dns_resolver(self) -> str | None: ...
    def publish(self, endpoint: Endpoint, configured: int) -> int: ...


# In-container ports: fixed, because every container has its own address.
CONTAINER_PORTS = {
    "postgres": 5432,
    "api": 8008,
    "etcd-client": 2379,
    "etcd-peer": 2380,
    "read-write": 5432,
    "read-only": 5433,
    "stats": 7000,
    "any-node": 5434,
}


@dataclass(frozen=True)
class DockerLayout:
    """Members are containers on one bridge network, reached by container name."""

    kind: Literal["docker", "local"] = "docker"

    def bin_dir(self, postgres_major: int) -> str:
        return f"/usr/lib/postgresql/{postgres_major}/bin"

    def endpoint(self, name: str, role: str) -> Endpoint:
        return Endpoint(host=name, port=CONTAINER_PORTS[role], listen="0.0.0.0")

    def member_dirs(self, name: str) -> tuple[str, str]:
        return f"{DOCKER_DATA_MOUNT}/pgdata", PATRONI_CONFIG_DIR

    def etcd_dir(self, name: str) -> str:
        return f"{ETCD_DATA_MOUNT}/data"  # a subdirectory: etcd insists on mode 0700, a volume root is 0755

    def allowed_cidr(self, config: ClusterConfig) -> str:
        return str(config.network.subnet)

    def socket_dir(self) -> str:
        return "/var/run/postgresql"

    def dns_resolver(self) -> str | None:
        return DOCKER_DNS

    def publish(self, endpoint: Endpoint, configured: int) -> int:
        """Docker maps the configured host port onto the fixed in-container port."""
        return configured


class PortBook:
    """Which local port each listener (`name/role`) got; new listeners draw from `free`.

    The harness keeps the book across plans (it is saved in its state file), so a member keeps its ports
    when the plan grows or shrinks around it, just as a container keeps its name.
    """

    def __init__(self, assigned: Mapping[str, int] | None = None, free: Iterable[int] = ()) -> None:
        self.assigned: dict[str, int] = dict(assigned or {})
        self._free = iter(free)

    def offer(self, free: Iterable[int]) -> None:
        """Ports new listeners may draw from from now on (replacing any not yet drawn)."""
        self._free = iter(free)

    def port(self, name: str, role: str) -> int:
        key = f"{name}/{role}"
        if key not in self.assigned:
            taken = set(self.assigned.values())
            port = next((p for p in self._free if p not in taken), None)
            if port is None:
                raise ValueError(f"no free port left for {key}; give the PortBook more (see ports_needed())")
            self.assigned[key] = port
        return self.assigned[key]


@dataclass(frozen=True)
class LocalLayout:
    """Members are processes on 127.0.0.1 under `base_dir`, each listener on its own port from `ports`."""

    base_dir: str
    ports: PortBook
    local_bin_dir: str
    kind: Literal["docker", "local"] = "local"

    def bin_dir(self, postgres_major: int) -> str:
        return self.local_bin_dir

    def endpoint(self, name: str, role: str) -> Endpoint:
        return Endpoint(host="127.0.0.1", port=self.ports.port(name, role), listen="127.0.0.1")

    def member_dirs(self, name: str) -> tuple[str, str]:
        return f"{self.base_dir}/{name}/data", f"{self.base_dir}/{name}/patroni"

    def etcd_dir(self, name: str) -> str:
        return f"{self.base_dir}/{name}/data"

    def allowed_cidr(self, config: ClusterConfig) -> str:
        return "127.0.0.1/32"

    def socket_dir(self) -> str:
        return self.base_dir

    def dns_resolver(self) -> str | None:
        return None

    def publish(self, endpoint: Endpoint, configured: int) -> int:
        """Local processes are reached directly on the port they bind."""
        return endpoint.port


def ports_needed(config: ClusterConfig) -> int:
    """How many distinct ports a LocalLayout must be given for `config`."""
    return 2 * config.database_members + 2 * config.etcd.members + len(config.ports.balancer_ports())


def group_role(group: int) -> Literal["coordinator", "worker"]:
    return "coordinator" if group == 0 else "worker"


def member_name(config: ClusterConfig, group: int, index: int) -> str:
    base = "coordinator" if group == 0 else f"worker{group}"
    return f"{config.name}-{base}-{index}"


def build_plan(config: ClusterConfig, layout: Layout | None = None) -> Plan:
    layout = layout or DockerLayout()
    ports = config.ports
    groups: list[tuple[Member, ...]] = []
    ordinal = 0
    for group, size in enumerate(config.group_sizes):
        members = []
        for index in range(size):
            name = member_name(config, group, index)
            data_dir, config_dir = layout.member_dirs(name)
            postgres, api = layout.endpoint(name, "postgres"), layout.endpoint(name, "api")
            published = ports.member_ports(ordinal)
            members.append(
                Member(
                    name=name,
                    group=group,
                    index=index,
                    ordinal=ordinal,
                    postgres=postgres,
                    api=api,
                    data_dir=data_dir,
                    config_dir=config_dir,
                    volume=f"{name}-data",
                    published_postgres=layout.publish(postgres, published["postgres"]),
                    published_api=layout.publish(api, published["api"]),
                )
            )
            ordinal += 1
        groups.append(tuple(members))

    etcd = tuple(
        EtcdMember(
            name=(name := f"{config.name}-etcd-{i}"),
            client=layout.endpoint(name, "etcd-client"),
            peer=layout.endpoint(name, "etcd-peer"),
            data_dir=layout.etcd_dir(name),
            volume=f"{name}-data",
        )
        for i in range(config.etcd.members)
    )
    haproxy = f"{config.name}-haproxy"
    configured = ports.balancer_ports()
    listeners = {role: layout.endpoint(haproxy, role) for role in configured}
    balancer = Balancer(
        name=haproxy,
        read_write=listeners["read-write"],
        read_only=listeners["read-only"],
        stats=listeners["stats"],
        any_node=listeners.get("any-node"),
        published={role: layout.publish(ep, configured[role]) for role, ep in listeners.items()},
        config_path=HAPROXY_CONFIG_PATH if layout.kind == "docker" else f"{layout.socket_dir()}/haproxy.cfg",
    )
    return Plan(
        config=config,
        layout=layout.kind,
        network=f"{config.name}-net",
        bin_dir=layout.bin_dir(config.versions.postgres),
        allowed_cidr=layout.allowed_cidr(config),
        socket_dir=layout.socket_dir(),
        dns_resolver=layout.dns_resolver(),
        client_host=client_host(config),
        etcd=etcd,
        groups=tuple(groups),
        balancer=balancer,
    )


def client_host(config: ClusterConfig) -> str:
    """The address a client on the user's machine dials to reach a published port.

    With a remote Docker host the ports are published there, so clients dial that host's name.
    """
    address = config.ports.bind_address
    if config.remote_docker_host and address.is_unspecified:
        return config.remote_docker_host
    return "127.0.0.1" if address.is_unspecified else str(address)
