"""Turn raw stack values into a ClusterConfig, or into one error that lists every problem.

Two steps, both pure: pydantic checks each key's shape (type, bounds, unknown keys); then cross-key rules
(version compatibility, port collisions, public binds, password secrecy) run on the typed config. Every
problem names its key path, what was found and what to do, so a user fixes all of them in one go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from cluster.config import guards
from cluster.config.models import ClusterConfig
from cluster.config.versions import (
    CITUS_RELEASES,
    POSTGIS_RELEASES,
    citus_line,
    postgis_supports,
)
from cluster.errors import ClusterError
from cluster.secrets import MIN_PASSWORD_LENGTH, PASSWORD_KEYS, REPOSITORY_KEYS, SECRET_KEYS


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(ClusterError):
    """The stack configuration is invalid; `problems` lists each one by key path."""

    exit_code = 2

    def __init__(self, problems: list[Problem], source: str = "stack configuration") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"Invalid {source} ({len(problems)} {noun}); nothing was created:\n{lines}")


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config plus which passwords the user supplied (the rest are generated)."""

    config: ClusterConfig
    supplied_passwords: frozenset[str]


def load_config(
    raw: Mapping[str, Any], secret_keys: Collection[str] = (), host_cpus: int | None = None
) -> LoadedConfig:
    """Validate `raw` (stack keys without the project prefix) or raise ConfigError listing every problem.

    `secret_keys` are the keys whose values were stored with `--secret`: a password anywhere else is refused.
    `host_cpus` is the Docker host's CPU count when known (CPU limits above it are refused).
    """
    problems = _password_problems(raw, secret_keys) + _short_password_problems(raw)
    settings = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    try:
        config = ClusterConfig.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(problems + _shape_problems(exc)) from None
    supplied = frozenset(k for k in PASSWORD_KEYS if k in raw)
    problems += semantic_problems(config, supplied, host_cpus)
    problems += backup_problems(config, frozenset(k for k in REPOSITORY_KEYS if k in raw))
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, supplied)


def _password_problems(raw: Mapping[str, Any], secret_keys: Collection[str]) -> list[Problem]:
    return [
        Problem(
            key,
            "a password must be stored encrypted; found it in plain text. Remove it and run "
            f"`pulumi config set --secret {key} <value>`"
            + (" (or leave it unset to have one generated)." if key in PASSWORD_KEYS else "."),
        )
        for key in SECRET_KEYS
        if key in raw and key not in secret_keys
    ]


def _short_password_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Supplied passwords that are empty or short (encrypted stack-file values cannot be read here; Pulumi hands
    the program the decrypted text, which is checked)."""
    return [
        Problem(key, f"is {len(raw[key])} characters; use at least {MIN_PASSWORD_LENGTH} (or remove it to have "
                     f"one generated): `pulumi config set --secret {key} \"$(openssl rand -base64 24)\"`.")
        for key in PASSWORD_KEYS
        if isinstance(raw.get(key), str) and len(raw[key]) < MIN_PASSWORD_LENGTH
    ]


def _shape_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = err["loc"][:-1]
            known = ", ".join(sorted(_known_keys(parent))) or "(none)"
            message = f"unknown key. Known keys here: {known}"
        else:
            found = err.get("input")
            message = f"{err['msg']}; found {found!r}"
        problems.append(Problem(key, message))
    return problems


def _known_keys(path: tuple[Any, ...]) -> list[str]:
    """camelCase field names of the model at `path` (for 'unknown key' hints)."""
    model: Any = ClusterConfig
    for part in path:
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        field = fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not isinstance(annotation, type) or not hasattr(annotation, "model_fields"):
            return []
        model = annotation
    keys = [f.alias or name for name, f in model.model_fields.items()]
    return keys + (list(SECRET_KEYS) if model is ClusterConfig else [])


def semantic_problems(
    config: ClusterConfig, supplied_passwords: Collection[str], host_cpus: int | None = None
) -> list[Problem]:
    """Rules that span keys; run only on a config whose every key already has the right shape."""
    guarded = [
        *guards.role_problems(config),
        *guards.parameter_problems(config),
        *guards.memory_problems(config),
        *guards.cpu_problems(config, host_cpus),
        *guards.docker_host_problems(config),
        *guards.docker_pool_problems(config),
        *guards.grid_problems(config),
        *guards.pooling_problems(config),
    ]
    return [
        *_version_problems(config),
        *_port_problems(config),
        *_bind_problems(config),
        *_network_problems(config),
        *_replication_problems(config),
        *_storage_problems(config, supplied_passwords),
        *_distribution_problems(config),
        *(Problem(key, message) for key, message in guarded),
    ]


def _distribution_problems(config: ClusterConfig) -> list[Problem]:
    """Cells must tile the globe exactly: a row of cells that does not close at the antimeridian (or a column
    at the poles) would put neighbouring points of the last, narrower cell into different tiles."""
    degrees = config.citus.distribution.cell_degrees
    cells = 180 / degrees
    if abs(cells - round(cells)) > 1e-9:
        return [Problem("citus.distribution.cellDegrees",
                        f"{degrees} does not divide 180 evenly (180 / {degrees} = {cells:.4g}); use a value such "
                        "as 0.02, 0.04, 0.05 or 0.1.")]
    return []


def _version_problems(config: ClusterConfig) -> list[Problem]:
    v = config.versions
    release = CITUS_RELEASES.get(citus_line(v.citus))
    if release is None:
        lines = ", ".join(sorted(CITUS_RELEASES))
        return [Problem("versions.citus", f"Citus {v.citus} is not a known release line; use one of {lines}.")]
    problems = []
    if v.postgres not in release.postgres:
        majors = ", ".join(map(str, release.postgres))
        problems.append(
            Problem(
                "versions.postgres",
                f"Citus {v.citus} is published for PostgreSQL {majors}; found {v.postgres}. "
                "Change versions.postgres or versions.citus.",
            )
        )
    if v.postgis != "3" and v.postgis not in POSTGIS_RELEASES:
        known = ", ".join(["3", *sorted(POSTGIS_RELEASES)])
        problems.append(Problem("versions.postgis", f"unknown PostGIS line {v.postgis!r}; use one of {known}."))
    elif not postgis_supports(v.postgis, v.postgres):
        problems.append(
            Problem(
                "versions.postgis",
                f"PostGIS {v.postgis} does not support PostgreSQL {v.postgres}. "
                'Use "3" (newest for that PostgreSQL) or a line that lists it.',
            )
        )
    return problems


def published_ports(config: ClusterConfig) -> dict[str, int]:
    """Every host port the stack publishes, by the key (path) that sets it."""
    p = config.ports
    ports = {f"ports.{to_camel(role.replace('-', '_'))}": port for role, port in p.balancer_ports().items()}
    base_keys = {"postgres": "ports.postgresBase", "api": "ports.patroniBase"}
    for i in range(config.database_members):
        for role, port in p.member_ports(i).items():
            ports[f"{base_keys[role]}+{i}"] = port
    return ports


def _port_problems(config: ClusterConfig) -> list[Problem]:
    problems = []
    seen: dict[int, str] = {}
    for key, port in published_ports(config).items():
        base_key = key.split("+")[0]
        if port > 65535:
            problems.append(Problem(base_key, f"{key} = {port} is above 65535; lower {base_key}."))
        elif port in seen:
            problems.append(
                Problem(
                    base_key,
                    f"port {port} ({key}) is already used by {seen[port]}; every published port must be "
                    "distinct (bases reserve one port per database member).",
                )
            )
        else:
            seen[port] = key
    # Report each offending key once, even when a whole range collides.
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(problem.key, problem)
    return list(unique.values())


def _bind_problems(config: ClusterConfig) -> list[Problem]:
    address = config.ports.bind_address
    if config.remote_docker_host and address.is_loopback:
        return [
            Problem(
                "ports.bindAddress",
                f"{address} is the loopback of the remote Docker host {config.docker_host}: neither you nor the "
                "provisioning step (which runs on this machine) could reach the cluster. Set ports.bindAddress to "
                "an address of that host this machine can reach, with ports.allowPublicBind: true.",
            )
        ]
    if address.is_loopback or config.ports.allow_public_bind:
        return []
    return [
        Problem(
            "ports.bindAddress",
            f"{address} publishes the database and its admin API beyond this machine. Use 127.0.0.1, or set "
            "ports.allowPublicBind to true if you mean it (and firewall it).",
        )
    ]


def _network_problems(config: ClusterConfig) -> list[Problem]:
    subnet = config.network.subnet
    needed = config.database_members + config.etcd.members + 2  # HAProxy and the bridge gateway
    problems = []
    if subnet.num_addresses - 2 < needed:
        problems.append(
            Problem(
                "network.subnet",
                f"{subnet} holds {subnet.num_addresses - 2} hosts; the cluster needs {needed}. Use a larger prefix.",
            )
        )
    if not subnet.is_private:
        problems.append(
            Problem(
                "network.subnet",
                f"{subnet} is not a private range; use one inside 10/8, 172.16/12 or 192.168/16.",
            )
        )
    if subnet.overlaps(ipaddress.IPv4Network("127.0.0.0/8")):
        problems.append(Problem("network.subnet", f"{subnet} overlaps loopback; use a private range."))
    return problems


def _replication_problems(config: ClusterConfig) -> list[Problem]:
    has_standby = config.coordinator.members > 1 or config.workers.members > 1
    if config.replication.synchronous and not has_standby:
        return [
            Problem(
                "replication.synchronous",
                "is true but no group has a standby to confirm commits (coordinator.members and "
                "workers.members are 1). Add members or unset it.",
            )
        ]
    return []


def _storage_problems(config: ClusterConfig, supplied: Collection[str]) -> list[Problem]:
    if not config.storage.retain_on_destroy:
        return []
    generated = [k for k in ("superuserPassword", "replicationPassword") if k not in supplied]
    if not generated:
        return []
    return [
        Problem(
            "storage.retainOnDestroy",
            f"keeps data past `pulumi destroy`, but {', '.join(generated)} would be generated anew on the next "
            "`pulumi up` and no longer open that data. Set them with `pulumi config set --secret`.",
        )
    ]


def backup_problems(config: ClusterConfig, supplied_keys: Collection[str]) -> list[Problem]:
    """An S3 repository needs its endpoint section and its access key pair (as secrets); a volume needs neither."""
    repository = config.backups.repository
    if repository.type != "s3":
        if repository.s3 is not None:
            return [Problem("backups.repository.s3", "is set but backups.repository.type is 'volume'; set the type "
                            "to s3 or remove the s3 section.")]
        return []
    problems = []
    if repository.s3 is None:
        problems.append(Problem("backups.repository.s3", "is required when backups.repository.type is s3: set "
                                "endpoint and bucket (region, uriStyle, verifyTls optional)."))
    problems += [
        Problem(key, f"is required when backups.repository.type is s3: `pulumi config set --secret {key} <value>`.")
        for key in REPOSITORY_KEYS
        if key not in supplied_keys
    ]
    return problems
