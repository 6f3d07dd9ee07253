"""The stack configuration as pydantic models: the one definition of every key, its default and its bounds.

Keys are camelCase as Pulumi configs usually are (`pulumi config set --path workers.groups 4`); unknown keys
are errors at every level, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# PostgreSQL settings the plan owns (addresses, ports, preload, replication plumbing): a passthrough value
# for one of these would fight Patroni or break the cluster, so it is refused with the key that controls it.
MANAGED_PARAMETERS: dict[str, str] = {
    "port": "ports.*",
    "listen_addresses": "the plan (Patroni sets it)",
    "data_directory": "the plan",
    "hba_file": "the plan",
    "ident_file": "the plan",
    "config_file": "the plan",
    "shared_preload_libraries": "the plan (citus is preloaded by Patroni's Citus mode, pg_cron by the plan)",
    "citus.recover_2pc_interval": "the plan (Citus's own recovery is unsafe here; sql/0004 runs a guarded one)",
    "cron.database_name": "citus.database",
    "cron.use_background_workers": "the plan",
    "wal_level": "the plan (replica is required for standbys)",
    "hot_standby": "the plan",
    "synchronous_standby_names": "replication.synchronous",
    "synchronous_commit": "replication.synchronous",
    "citus.local_hostname": "the plan (Patroni sets it)",
    "cluster_name": "name (Patroni sets it from its scope)",
    "archive_mode": "backups.enabled",
    "archive_command": "backups.* (pgBackRest archive-push)",
    "restore_command": "backups.* (pgBackRest archive-get)",
}

# Settings Patroni takes from its dynamic (DCS) configuration only: in a member's own file it drops them with a
# warning, so they are rendered under bootstrap.dcs and kept in step on a running cluster by provisioning.
# Patroni 4.1.5's ConfigHandler.CMDLINE_OPTIONS minus those the plan owns (see MANAGED_PARAMETERS); a unit test
# compares the two where Patroni is installed.
DCS_PARAMETERS: frozenset[str] = frozenset({
    "max_connections",
    "max_wal_senders",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_worker_processes",
    "max_replication_slots",
    "wal_keep_size",
    "wal_keep_segments",
    "track_commit_timestamp",
    "wal_log_hints",
})


# max_connections every member runs with unless postgresql.parameters sets it (rendered by cluster.render.patroni;
# the pooling guard checks PgBouncer's pools against the same number).
DEFAULT_MAX_CONNECTIONS = 200


class Model(BaseModel):
    """Strict base: unknown keys are errors, values are immutable, camelCase aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Versions(Model):
    """Software versions. Only combinations listed in cluster/config/versions.py are accepted."""

    postgres: int = Field(17, ge=10, le=30, description="PostgreSQL major version.")
    citus: str = Field("13.2.0", pattern=r"^\d+\.\d+\.\d+$", description="Citus release (x.y.z).")
    postgis: str = Field(
        "3",
        pattern=r"^3(\.\d+)?$",
        description='PostGIS line: "3" = newest 3.x for that PostgreSQL, or a pinned minor such as "3.5".',
    )
    patroni: str = Field("4.1.5", pattern=r"^\d+\.\d+\.\d+$", description="Patroni release (pip).")
    etcd: str = Field("3.5.17", pattern=r"^\d+\.\d+\.\d+$", description="etcd release (quay.io/coreos/etcd).")
    haproxy: str = Field("3.0", pattern=r"^\d+\.\d+(\.\d+)?$", description="Official haproxy image tag.")


class Coordinator(Model):
    members: int = Field(2, ge=1, le=9, description="Coordinator members (Citus group 0); 1 = no standby.")


class Workers(Model):
    groups: int = Field(3, ge=1, le=64, description="Worker groups (Citus groups 1..N).")
    members: int = Field(2, ge=1, le=9, description="Members per worker group; 1 = no standby.")


class Etcd(Model):
    members: Literal[1, 3, 5] = Field(3, description="etcd members (odd, for a quorum).")


class Distribution(Model):
    """How vehicle_locations is spread over shards; read by sql/0002_spatial_distribution.sql when it runs."""

    strategy: Literal["spatial", "vehicle"] = Field(
        "spatial",
        description="spatial = by the grid cell of each row's location (radius, box and nearest-vehicle queries "
        "touch only the shards they need; one vehicle's track fans out); vehicle = by vehicle_id (tracks "
        "touch one shard; every spatial query fans out).",
    )
    cell_degrees: float = Field(
        0.04,
        gt=0,
        le=10,
        description="Grid cell size in degrees (180 / cellDegrees must be whole). Cells are dealt to shards in a "
        "repeating tile, so a dense city spreads over every shard while a small radius touches few.",
    )


class Citus(Model):
    database: str = Field("citus", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Distributed database.")
    shard_count: int = Field(32, ge=1, le=4096, description="citus.shard_count for new distributed tables.")
    app_user: str = Field("app", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Application role (not superuser).")
    distribution: Distribution = Distribution()


class Network(Model):
    subnet: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("10.94.0.0/24"),
        description="Subnet of the cluster's bridge network; pg_hba admits only this range. Must stay clear of "
        "Docker's default address pools (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16).",
    )


class Ports(Model):
    """Ports published on the Docker host; the only way in from outside the cluster network."""

    bind_address: ipaddress.IPv4Address = Field(
        ipaddress.IPv4Address("127.0.0.1"), description="Host address every port is published on."
    )
    allow_public_bind: bool = Field(False, description="Required to publish on a non-loopback address.")
    read_write: int = Field(5432, ge=1, le=65535, description="HAProxy read-write port (coordinator leader).")
    read_only: int = Field(5433, ge=1, le=65535, description="HAProxy read-only port (coordinator replicas).")
    stats: int = Field(7000, ge=1, le=65535, description="HAProxy stats page (basic auth).")
    any_node: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="HAProxy port spreading sessions over every group's leader (Citus query from any node: "
        "reads and DML, no DDL); unset = off.",
    )
    postgres_base: int = Field(
        15432, ge=1, le=65535, description="Member i's PostgreSQL is published on postgresBase + i."
    )
    patroni_base: int = Field(
        18008, ge=1, le=65535, description="Member i's Patroni REST API is published on patroniBase + i."
    )

    def balancer_ports(self) -> dict[str, int]:
        """HAProxy's published ports by listener role (any-node only when configured)."""
        ports = {"read-write": self.read_write, "read-only": self.read_only, "stats": self.stats}
        if self.any_node is not None:
            ports["any-node"] = self.any_node
        return ports

    def member_ports(self, ordinal: int) -> dict[str, int]:
        """Database member `ordinal`'s published ports (PostgreSQL, Patroni REST): each base plus its ordinal."""
        return {"postgres": self.postgres_base + ordinal, "api": self.patroni_base + ordinal}


class Limits(Model):
    memory_mb: int = Field(ge=64, le=1_048_576, description="Memory limit in MiB.")
    cpus: float | None = Field(None, gt=0, le=256, description="CPU limit (None = unlimited).")


class Resources(Model):
    database: Limits = Limits(memory_mb=768)
    etcd: Limits = Limits(memory_mb=256)
    haproxy: Limits = Limits(memory_mb=128)


ParameterValue = bool | int | float | str


class Postgresql(Model):
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict,
        description="postgresql.conf settings passed through to every member (names are case-insensitive).",
    )

    @field_validator("parameters", mode="after")
    @classmethod
    def _canonical_names(cls, parameters: dict[str, ParameterValue]) -> dict[str, ParameterValue]:
        """PostgreSQL matches setting names case-insensitively and ignores surrounding blanks, so the guards
        must too: `SYNCHRONOUS_COMMIT ` is synchronous_commit. Two spellings of one setting are refused."""
        canonical: dict[str, ParameterValue] = {}
        for name, value in parameters.items():
            key = name.strip().lower()
            if key in canonical:
                raise ValueError(f"{key!r} is set twice (as {name!r} and another spelling); keep one")
            canonical[key] = value
        return canonical


class Replication(Model):
    synchronous: bool | None = Field(
        None,
        description="Synchronous replication (Patroni's synchronous mode: a commit waits for one standby, only it "
        "may be promoted); unset = on when a group has a standby.",
    )


class Storage(Model):
    retain_on_destroy: bool = Field(
        False,
        description="Keep data volumes on `pulumi destroy` (needs passwords set with --secret).",
    )


class BackupSchedule(Model):
    """When backups and restore points happen; the recovery point objective is restorePointEveryMinutes."""

    full_every_hours: int = Field(
        168, ge=1, le=24 * 366, description="A full backup of every group when the last full is this old."
    )
    differential_every_hours: int = Field(
        24, ge=1, le=24 * 366, description="A differential backup (changes since the last full) this often."
    )
    restore_point_every_minutes: int = Field(
        15,
        ge=1,
        le=24 * 60,
        description="A cluster-wide citus_create_restore_point this often between backups: the recovery point "
        "objective a restore to a consistent point can reach.",
    )


class S3Repository(Model):
    """An S3-compatible bucket; the access key pair comes from the secret keys backupS3Key/backupS3KeySecret."""

    endpoint: str = Field(pattern=r"^[A-Za-z0-9.-]+(:\d{1,5})?$", description="S3 endpoint host[:port].")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket name.")
    region: str = Field("us-east-1", min_length=1, description="Region the endpoint expects in signatures.")
    uri_style: Literal["host", "path"] = Field("path", description="path for MinIO-style endpoints.")
    verify_tls: bool = Field(True, description="Verify the endpoint's TLS certificate.")


class BackupRepository(Model):
    type: Literal["volume", "s3"] = Field(
        "volume", description="volume = a Docker volume shared by the database containers (a directory in the "
        "local harness); s3 = an S3-compatible endpoint (backups.repository.s3)."
    )
    path: str = Field("/pgbackrest", pattern=r"^/[A-Za-z0-9._/-]*$", description="Repository path in the bucket "
                      "(s3; the volume is mounted at a fixed path).")
    s3: S3Repository | None = Field(None, description="Required when type is s3.")


class Backups(Model):
    """pgBackRest: one stanza per Citus group, WAL archived from every primary, restore points cluster-wide."""

    enabled: bool = Field(True, description="Archive WAL and allow backups; false = no archive_command at all.")
    schedule: BackupSchedule = BackupSchedule()
    retention_full: int = Field(2, ge=1, le=999, description="Full backups kept per group (older ones expire, "
                                "with their differentials and WAL).")
    compression: Literal["none", "gz", "lz4", "zst", "bz2"] = Field(
        "lz4", description="pgBackRest compress-type for backups and archived WAL (lz4: cheap on CPU)."
    )
    compression_level: int | None = Field(None, ge=0, le=19, description="compress-level (unset = pgBackRest's).")
    repository: BackupRepository = BackupRepository()


class Monitoring(Model):
    """Prometheus for the Docker stack. Every member's Patroni and HAProxy serve /metrics whatever this says;
    enabled adds a prometheus-postgres-exporter beside every member (sharing its network namespace), a
    prometheus-pgbouncer-exporter beside every coordinator member's PgBouncer (with pooling.enabled) and one
    Prometheus container with the rendered scrape config and alert rules."""

    enabled: bool = Field(False, description="Exporters beside every member and a Prometheus container.")
    port: int = Field(9090, ge=1, le=65535, description="Host port Prometheus's web UI and API are published on.")
    resources: Limits = Field(Limits(memory_mb=512), description="The Prometheus container's limits.")


class Pooling(Model):
    """PgBouncer in front of every coordinator member; HAProxy's read-write port sends to the leader's."""

    enabled: bool = Field(
        True,
        description="PgBouncer on every coordinator member, in transaction pooling for applications (the "
        "superuser's sessions are pooled per session); false = HAProxy's read-write port reaches PostgreSQL "
        "directly.",
    )
    pool_size: int = Field(
        20,
        ge=1,
        le=1000,
        description="Server connections per database and role on each coordinator member (PgBouncer's "
        "default_pool_size): how many transactions run at once, whatever the number of clients.",
    )
    reserve_pool_size: int = Field(
        5, ge=0, le=1000, description="Extra server connections a pool may open when a client waited 3 s."
    )
    max_client_connections: int = Field(
        2000, ge=10, le=100_000, description="Client connections each PgBouncer accepts (max_client_conn)."
    )

    @property
    def server_connections(self) -> int:
        """The most connections PgBouncer opens to its PostgreSQL for the cluster's database: the application
        role's pool, the superuser's (session) pool, each with its reserve, and the auth_query connection."""
        return 2 * (self.pool_size + self.reserve_pool_size) + 1


class ClusterConfig(Model):
    """Everything a stack can say about its cluster. Passwords are not here: see cluster.secrets."""

    name: str = Field("citus", pattern=r"^[a-z][a-z0-9-]{0,19}$", description="Prefix of every Docker name.")
    versions: Versions = Versions()
    coordinator: Coordinator = Coordinator()
    workers: Workers = Workers()
    etcd: Etcd = Etcd()
    citus: Citus = Citus()
    network: Network = Network()
    ports: Ports = Ports()
    resources: Resources = Resources()
    postgresql: Postgresql = Postgresql()
    replication: Replication = Replication()
    storage: Storage = Storage()
    backups: Backups = Backups()
    monitoring: Monitoring = Monitoring()
    pooling: Pooling = Pooling()
    docker_host: str | None = Field(
        None,
        pattern=r"^(unix|tcp|ssh|npipe)://.+$",
        description="Docker host to deploy on (unset = DOCKER_HOST or the local socket).",
    )

    @property
    def group_sizes(self) -> list[int]:
        """Members per Citus group, by group id (0 = coordinator)."""
        return [self.coordinator.members] + [self.workers.members] * self.workers.groups

    @property
    def database_members(self) -> int:
        return sum(self.group_sizes)

    @property
    def remote_docker_host(self) -> str | None:
        """The remote machine's name when Docker runs elsewhere (tcp:// or ssh://); published ports are there."""
        if self.docker_host and self.docker_host.startswith(("tcp://", "ssh://")):
            return urlsplit(self.docker_host).hostname
        return None
