"""The topology as data: who runs where, on which address and port, with which name. Pure, no I/O.

A plan is built from a validated ClusterConfig and a Layout. The layout is the only thing that differs
between the Docker deployment (container DNS names, fixed in-container ports, paths inside the image) and
the test harness (127.0.0.1, free ports, a temp dir, the local PostgreSQL): every renderer reads the plan,
so both consumers run the very same files. A third layout, NamespaceLayout, places each member of the harness on a
host of its own (a network namespace with its own address on a bridge), so the network between hosts can be cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Literal, Protocol
from urllib.parse import quote, urlencode

from cluster.config import ClusterConfig
from cluster.config.sources import project_root
from cluster.roles import MONITORING_USER as MONITORING_USER
from cluster.roles import REPLICATION_USER as REPLICATION_USER  # re-exported: renderers import role names here
from cluster.roles import RESTAPI_USER as RESTAPI_USER
from cluster.roles import STATS_USER as STATS_USER
from cluster.roles import SUPERUSER

PATRONI_VENV = "/opt/patroni"
PATRONI_CONFIG_DIR = "/etc/patroni"
DOCKER_DATA_MOUNT = "/var/lib/postgresql/data"
ETCD_DATA_MOUNT = "/etcd-data"
DOCKER_BACKUP_MOUNT = "/var/lib/pgbackrest"  # the backup repository volume, in every database container
HAPROXY_CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"
DOCKER_DNS = "127.0.0.11:53"
# The database user's ids in the image (the official postgres images fix them; the Dockerfile checks): secrets
# files are uploaded owned by it, mode 0600, so only the server user reads them.
DATABASE_UID = 999
SECRET_FILE_MODE = "0600"
PROMETHEUS_CONFIG_DIR = "/etc/citus-cluster/prometheus"  # the Prometheus container's scrape config and rules
PROMETHEUS_DATA_MOUNT = "/prometheus"  # its TSDB volume
POOLER_CONFIG_DIR = "/etc/pgbouncer"  # PgBouncer's rendered file and auth file, in coordinator containers
POOLER_CONFIG_NAME = "pgbouncer.ini"
DOCKER_TLS_DIR = "/etc/citus-cluster/tls"  # every container has its own filesystem, so one path serves all
SSLMODE = "verify-full"  # every client of the cluster checks the chain and the host name

Listener = Literal["read-write", "read-only", "any-node"]

# Every session of the read-only listener runs with these (issue 15, read scaling): Citus plans its shard queries
# on the workers' standbys (registered as `secondary` in pg_dist_node), so a read through a coordinator standby
# touches no primary at all, and the session refuses writes even where HAProxy sent it to the leader (no standby
# healthy). Carried in the DSN's `options` (libpq: `-c name=value` at connection start) because
# citus.use_secondary_nodes is PGC_SU_BACKEND: it can only be set when a session starts, not by ALTER ROLE ... SET
# (rejected at login) nor by SET; provisioning grants the application role SET on it (PostgreSQL 15+). It must
# not be set server-wide: on a primary coordinator it makes Citus refuse every write to a distributed table.
SECONDARY_READS = ("citus.use_secondary_nodes", "always")
READ_ONLY_TRANSACTIONS = ("default_transaction_read_only", "on")
GRANT_SET_ON_PARAMETER_SINCE = 15  # GRANT SET ON PARAMETER (how a role that is not superuser may set it)


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
class Pooler:
    """PgBouncer on a coordinator member's host: where it listens, where its files are, what it pools."""

    endpoint: Endpoint  # on the member's host; HAProxy's read-write listener sends the leader's traffic here
    config_dir: str
    # Its prometheus-pgbouncer-exporter, on the member's host (Docker: the member's network namespace); it runs
    # where the postgres exporters run (Plan.monitored).
    exporter: Endpoint

    @property
    def config_path(self) -> str:
        return f"{self.config_dir}/{POOLER_CONFIG_NAME}"

    @property
    def auth_file(self) -> str:
        """The auth_user's own credential only (every other role is looked up through auth_query)."""
        return f"{self.config_dir}/auth_user.txt"

    @property
    def pid_file(self) -> str:
        """Written by whoever starts PgBouncer (the image's entrypoint, the harness), not by PgBouncer itself: a
        restarted container would find PgBouncer's own file naming a PID now in use and refuse to start."""
        return f"{self.config_dir}/pgbouncer.pid"


@dataclass(frozen=True)
class Member:
    """One PostgreSQL + Patroni member of a Citus group."""

    name: str
    group: int
    index: int  # position inside its group; index 0 is the intended first leader
    ordinal: int  # position across the cluster; picks its published ports
    postgres: Endpoint
    api: Endpoint
    exporter: Endpoint  # its prometheus-postgres-exporter, on the member's host (Docker: its network namespace)
    data_dir: str
    config_dir: str
    tls_dir: str
    volume: str
    published_postgres: int
    published_api: int
    host: str  # the host it is placed on: container name, 127.0.0.1, or its namespace's address
    published_host: str  # where the user's machine reaches published_postgres / published_api
    pooler: Pooler | None = None  # coordinator members with pooling.enabled

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
    tls_dir: str
    volume: str
    host: str


@dataclass(frozen=True)
class Host:
    """A machine of its own in the namespaced harness: one network namespace, one address on the bridge."""

    name: str  # the member placed on it
    namespace: str
    address: str
    veth: str  # the root namespace's end of its veth pair (Linux allows 15 characters)


@dataclass(frozen=True)
class HostNetwork:
    """The bridge the hosts hang off. The root namespace (clients, HAProxy, provisioning) owns `gateway`.

    `guard` is routed unreachable, so an address of the range that no host holds (or every address, once the
    bridge is gone) never leaves this machine by the default route.
    """

    bridge: str
    subnet: str  # e.g. 198.18.7.0/24
    gateway: str  # the bridge's own address
    guard: str  # routed unreachable
    hosts: tuple[Host, ...]

    def host(self, name: str) -> Host:
        found = next((h for h in self.hosts if h.name == name), None)
        if found is None:
            raise KeyError(f"no host named {name!r} in the plan's host network")
        return found


@dataclass(frozen=True)
class Balancer:
    """HAProxy: read-write, read-only and stats listeners (bind side) and their published host ports."""

    name: str
    read_write: Endpoint
    read_only: Endpoint
    stats: Endpoint
    tls_dir: str
    any_node: Endpoint | None = None  # every group's leader (Citus query from any node), when configured
    published: dict[str, int] = field(default_factory=dict)
    config_path: str = HAPROXY_CONFIG_PATH

    @property
    def config_dir(self) -> str:
        return self.config_path.rsplit("/", 1)[0]

    @property
    def secrets_dir(self) -> str:
        """Where the secrets file lives, alone: in Docker a volume shared with the one-shot container that writes
        a new stats password (the HAProxy container itself is never replaced for one)."""
        return f"{self.config_dir}/secrets"

    @property
    def secrets_path(self) -> str:
        """The second config file: the stats credential only (0600). HAProxy reads both at start and again on a
        reload (SIGUSR2 to its master), which its launcher sends when this file changes (launcher_path)."""
        return f"{self.secrets_dir}/stats-users.cfg"

    @property
    def secrets_volume(self) -> str:
        """The Docker volume at secrets_dir."""
        return f"{self.name}-secrets"

    @property
    def launcher_path(self) -> str:
        """The script HAProxy runs under (cluster.render.haproxy.LAUNCHER): starts it, reloads it on a new
        secrets file, passes stop signals on."""
        return f"{self.config_dir}/haproxy-launcher.sh"


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
    client_ca_file: str  # the cluster CA on the user's machine: every DSN's sslrootcert
    etcd: tuple[EtcdMember, ...]
    groups: tuple[tuple[Member, ...], ...]  # index = Citus group id; 0 = coordinator
    balancer: Balancer
    host_network: HostNetwork | None = None  # NamespaceLayout only: every member on a host of its own
    backup_dir: str = DOCKER_BACKUP_MOUNT  # pgBackRest's repository (a volume, or a directory of the harness)
    prometheus_tls_dir: str = DOCKER_TLS_DIR  # the Prometheus container's certificate (monitoring.enabled)

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(m for group in self.groups for m in group)

    @property
    def coordinators(self) -> tuple[Member, ...]:
        return self.groups[0]

    @property
    def pooled(self) -> bool:
        """True when HAProxy's read-write listener sends to the leader's PgBouncer (pooling.enabled)."""
        return all(m.pooler is not None for m in self.coordinators)

    @property
    def monitored(self) -> bool:
        """True where the exporters run (every member's prometheus-postgres-exporter, every PgBouncer's
        prometheus-pgbouncer-exporter): the harness always, the Docker stack with monitoring.enabled."""
        return self.layout == "local" or self.config.monitoring.enabled

    def sidecars(self, member: Member) -> list[str]:
        """The Docker containers in `member`'s network namespace (its exporters, where monitored): a member
        container that stopped and started takes that namespace with it, so they must restart after it."""
        if not (self.layout == "docker" and self.monitored):
            return []
        return [f"{member.name}-exporter", *([f"{member.name}-pgbouncer-exporter"] if member.pooler else [])]

    @property
    def scope(self) -> str:
        """Patroni cluster name; Citus mode requires the same scope for every group."""
        return self.config.name

    def dsn(self, role: Listener, password: str, user: str = SUPERUSER, database: str | None = None) -> str:
        """The URL a client on the user's machine uses to reach HAProxy's `role` listener (the read-only one
        with its session options, see session_options)."""
        return self._url(self.client_host, self.balancer.published[role], password, user, database,
                         self.session_options(role))

    def session_settings(self, role: Listener) -> tuple[tuple[str, str], ...]:
        """Settings every session of listener `role` starts with: reads on standbys for the read-only one.

        Below PostgreSQL 15 a role that is not superuser cannot be allowed to set citus.use_secondary_nodes, so
        there the read-only listener's sessions read shards from the workers' primaries (still read-only)."""
        if role != "read-only":
            return ()
        if self.config.versions.postgres < GRANT_SET_ON_PARAMETER_SINCE:
            return (READ_ONLY_TRANSACTIONS,)
        return (SECONDARY_READS, READ_ONLY_TRANSACTIONS)

    def session_options(self, role: Listener) -> str:
        """libpq's `options` value for listener `role` ('' when its sessions need none)."""
        return " ".join(f"-c {name}={value}" for name, value in self.session_settings(role))

    def member_dsn(self, member: Member, password: str, user: str = SUPERUSER, database: str | None = None) -> str:
        """The URL a client on the user's machine uses to reach one member's PostgreSQL directly."""
        return self._url(member.published_host, member.published_postgres, password, user, database)

    def _url(self, host: str, port: int, password: str, user: str, database: str | None, options: str = "") -> str:
        """Verified TLS (the cluster CA, the host name) in every URL the product hands out."""
        query = {"sslmode": SSLMODE, "sslrootcert": self.client_ca_file, **({"options": options} if options else {})}
        database = database or self.config.citus.database
        return f"postgresql://{user}:{quote(password, safe='')}@{host}:{port}/{database}?" + urlencode(
            query, safe="/", quote_via=quote)

    def user(self, credential: str) -> str:
        """The role that logs in with credential `credential` (a cluster.secrets.Passwords field)."""
        return self.config.citus.app_user if credential == "app" else SUPERUSER

    def dsn_outputs(self) -> tuple[DsnOutput, ...]:
        """The DSNs the stack exports: one list for the component, `render`'s plan.json and the docs.

        Each name says whose role it logs in as: `admin_dsn` is the superuser (migrations, operations), the
        `app_*` ones the application role, which can only read and write the schema's own tables. (Before
        issue 12: rw_dsn, ro_dsn and any_node_dsn were superuser DSNs; rw_dsn became admin_dsn, and the
        read-only and any-node listeners are exported for the application role only.)
        """
        outputs = [
            DsnOutput("admin_dsn", "read-write", "superuser"),
            DsnOutput("app_dsn", "read-write", "app"),
            DsnOutput("app_ro_dsn", "read-only", "app"),
        ]
        if self.balancer.any_node is not None:
            outputs.append(DsnOutput("app_any_node_dsn", "any-node", "app"))
        return tuple(outputs)

    @property
    def prometheus_name(self) -> str:
        """The Prometheus container (monitoring.enabled, Docker stack only)."""
        return f"{self.config.name}-prometheus"

    @property
    def prometheus_url(self) -> str:
        return f"https://{self.client_host}:{self.config.monitoring.port}"

    @property
    def stats_url(self) -> str:
        return f"https://{self.client_host}:{self.balancer.published['stats']}/"

    def node_summaries(self) -> list[dict[str, object]]:
        """What each database member is meant to be, and where the user's machine reaches it."""
        return [
            {
                "name": m.name,
                "group": m.group,
                "role": m.role,
                "intended": m.intended_role,
                "postgres": f"{m.published_host}:{m.published_postgres}",
                "patroni": f"https://{m.published_host}:{m.published_api}",
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
    def pooler_dir(self, name: str) -> str: ...  # PgBouncer's files of member `name`
    def etcd_dir(self, name: str) -> str: ...
    def tls_dir(self, name: str) -> str: ...  # where process `name` finds its CA, certificate and key
    def client_ca_file(self, config: ClusterConfig) -> str: ...  # the CA on the user's machine
    def allowed_cidr(self, config: ClusterConfig) -> str: ...
    def socket_dir(self) -> str: ...
    def dns_resolver(self) -> str | None: ...
    def publish(self, endpoint: Endpoint, configured: int) -> int: ...
    def host(self, name: str) -> str: ...  # the host `name` is placed on
    def published_host(self, endpoint: Endpoint, client_host: str) -> str: ...
    def host_network(self, names: list[str]) -> HostNetwork | None: ...
    def backup_dir(self) -> str: ...


# In-container ports: fixed, because every container has its own address.
CONTAINER_PORTS = {
    "postgres": 5432,
    "api": 8008,
    "exporter": 9187,
    "etcd-client": 2379,
    "etcd-peer": 2380,
    "read-write": 5432,
    "read-only": 5433,
    "stats": 7000,
    "any-node": 5434,
    "prometheus": 9090,
    "pooler": 6432,
    "pooler-exporter": 9127,  # prometheus-pgbouncer-exporter's own default port
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

    def pooler_dir(self, name: str) -> str:
        return POOLER_CONFIG_DIR

    def etcd_dir(self, name: str) -> str:
        return f"{ETCD_DATA_MOUNT}/data"  # a subdirectory: etcd insists on mode 0700, a volume root is 0755

    def tls_dir(self, name: str) -> str:
        return DOCKER_TLS_DIR

    def client_ca_file(self, config: ClusterConfig) -> str:
        """Written by `pulumi up` (and `python -m cluster ca`) next to the rendered Dockerfile, ignored by git."""
        return str(project_root() / "build" / "tls" / f"{config.name}-ca.crt")

    def allowed_cidr(self, config: ClusterConfig) -> str:
        return str(config.network.subnet)

    def socket_dir(self) -> str:
        return "/var/run/postgresql"

    def dns_resolver(self) -> str | None:
        return DOCKER_DNS

    def publish(self, endpoint: Endpoint, configured: int) -> int:
        """Docker maps the configured host port onto the fixed in-container port."""
        return configured

    def host(self, name: str) -> str:
        return name  # the container's name, resolved by Docker's DNS

    def published_host(self, endpoint: Endpoint, client_host: str) -> str:
        return client_host

    def host_network(self, names: list[str]) -> HostNetwork | None:
        return None

    def backup_dir(self) -> str:
        return DOCKER_BACKUP_MOUNT


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

    def pooler_dir(self, name: str) -> str:
        return f"{self.base_dir}/{name}/pgbouncer"

    def etcd_dir(self, name: str) -> str:
        return f"{self.base_dir}/{name}/data"

    def tls_dir(self, name: str) -> str:
        return f"{self.base_dir}/{name}/tls"

    def client_ca_file(self, config: ClusterConfig) -> str:
        return f"{self.base_dir}/ca.crt"

    def allowed_cidr(self, config: ClusterConfig) -> str:
        return "127.0.0.1/32"

    def socket_dir(self) -> str:
        return self.base_dir

    def dns_resolver(self) -> str | None:
        return None

    def publish(self, endpoint: Endpoint, configured: int) -> int:
        """Local processes are reached directly on the port they bind."""
        return endpoint.port

    def host(self, name: str) -> str:
        return "127.0.0.1"

    def published_host(self, endpoint: Endpoint, client_host: str) -> str:
        return endpoint.host

    def host_network(self, names: list[str]) -> HostNetwork | None:
        return None

    def backup_dir(self) -> str:
        return f"{self.base_dir}/pgbackrest"


# Addresses the namespaced harness may use: RFC 2544's benchmarking range, which no real network routes.
# Each harness takes one /24 of it; the root namespace keeps .1, hosts draw from the rest.
NAMESPACE_RANGE = IPv4Network("198.18.0.0/15")
BALANCER_ROLES = ("read-write", "read-only", "stats", "any-node")


@dataclass(frozen=True)
class NamespaceLayout(LocalLayout):
    """LocalLayout's files and binaries, but every member and etcd member on a host of its own.

    Each host is a network namespace with one address of `subnet` on a bridge. Ports still come from `ports`,
    distinct across hosts, because every PostgreSQL shares one socket directory (the lock file is named by port).
    HAProxy stays in the root namespace on 127.0.0.1 (the clients'
    side), reaching the hosts through the bridge. `hosts` books each name's host number (kept in the harness's
    state, so a member keeps its address when the plan grows); `tag` makes interface and namespace names unique
    per harness.
    """

    subnet: str = "198.18.1.0/24"
    tag: str = "0000"
    hosts: PortBook = field(default_factory=lambda: PortBook(free=range(2, 255)))

    def address(self, name: str) -> str:
        return str(IPv4Network(self.subnet)[self.hosts.port(name, "host")])

    def endpoint(self, name: str, role: str) -> Endpoint:
        if role in BALANCER_ROLES:
            return super().endpoint(name, role)
        address = self.address(name)
        return Endpoint(host=address, port=self.ports.port(name, role), listen=address)

    def allowed_cidr(self, config: ClusterConfig) -> str:
        return self.subnet  # the root namespace (HAProxy, provisioning) speaks from the bridge's address

    def host(self, name: str) -> str:
        return self.address(name)

    def host_network(self, names: list[str]) -> HostNetwork | None:
        subnet = IPv4Network(self.subnet)
        hosts = tuple(
            Host(name=n, namespace=f"cc{self.tag}-{n}", address=self.address(n),
                 veth=f"cc{self.tag}h{self.hosts.port(n, 'host')}")
            for n in names
        )
        return HostNetwork(bridge=f"cc{self.tag}br", subnet=str(subnet), gateway=str(subnet[1]),
                           guard=str(subnet), hosts=hosts)


def ports_needed(config: ClusterConfig) -> int:
    """How many distinct ports a LocalLayout must be given for `config`."""
    poolers = config.coordinator.members if config.pooling.enabled else 0  # PgBouncer and its exporter each
    return 3 * config.database_members + 2 * config.etcd.members + len(config.ports.balancer_ports()) + 2 * poolers


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
                    exporter=layout.endpoint(name, "exporter"),
                    data_dir=data_dir,
                    config_dir=config_dir,
                    tls_dir=layout.tls_dir(name),
                    volume=f"{name}-data",
                    published_postgres=layout.publish(postgres, published["postgres"]),
                    published_api=layout.publish(api, published["api"]),
                    host=layout.host(name),
                    published_host=layout.published_host(postgres, client_host(config)),
                    pooler=Pooler(layout.endpoint(name, "pooler"), layout.pooler_dir(name),
                                  exporter=layout.endpoint(name, "pooler-exporter"))
                    if group == 0 and config.pooling.enabled else None,
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
            tls_dir=layout.tls_dir(name),
            volume=f"{name}-data",
            host=layout.host(name),
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
        tls_dir=layout.tls_dir(haproxy),
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
        client_ca_file=layout.client_ca_file(config),
        etcd=etcd,
        groups=tuple(groups),
        balancer=balancer,
        host_network=layout.host_network([m.name for group in groups for m in group] + [e.name for e in etcd]),
        backup_dir=layout.backup_dir(),
        prometheus_tls_dir=layout.tls_dir(f"{config.name}-prometheus"),
    )


def client_host(config: ClusterConfig) -> str:
    """The address a client on the user's machine dials to reach a published port.

    With a remote Docker host the ports are published there, so clients dial that host's name.
    """
    address = config.ports.bind_address
    if config.remote_docker_host and address.is_unspecified:
        return config.remote_docker_host
    return "127.0.0.1" if address.is_unspecified else str(address)
