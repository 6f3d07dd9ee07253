"""pgBackRest: one stanza per Citus group, and what Patroni needs to archive to and restore from it. Pure.

Each database member gets its own pgbackrest.conf next to its Patroni files: the repository section (shared by
the whole cluster: a volume mounted in every database container, a directory of the harness, or an S3 bucket)
plus its group's stanza pointing at that member's own data directory and port. A stanza is named after the
group, not the member, so a failover changes nothing in the repository: whichever member is primary archives
into, and backs up to, its group's stanza.
"""

from __future__ import annotations

import shlex
from typing import Any

from cluster.plan import SUPERUSER, Member, Plan
from cluster.secrets import REPOSITORY_KEYS

CONFIG_NAME = "pgbackrest.conf"
BINARY = "pgbackrest"
# The S3 access key pair reaches pgBackRest through its own environment variables, never the config file.
S3_KEY_ENV = dict(zip(REPOSITORY_KEYS, ("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"), strict=True))
DOCKER_LOG_DIR = "/var/log/pgbackrest"
DOCKER_LOCK_DIR = "/tmp/pgbackrest"


def stanza(plan: Plan, group: int) -> str:
    """The repository's name for Citus group `group` (the same in every stack of the same cluster name)."""
    return f"{plan.config.name}-group{group}"


def config_path(member: Member) -> str:
    return f"{member.config_dir}/{CONFIG_NAME}"


def repo_path(plan: Plan) -> str:
    """Where backups and archived WAL live: in the bucket (s3) or in the repository volume/directory."""
    repository = plan.config.backups.repository
    return repository.path if repository.type == "s3" else f"{plan.backup_dir}/repo"


def log_dir(plan: Plan) -> str:
    return DOCKER_LOG_DIR if plan.layout == "docker" else f"{plan.backup_dir}/log"


def lock_dir(plan: Plan) -> str:
    return DOCKER_LOCK_DIR if plan.layout == "docker" else f"{plan.backup_dir}/lock"


def local_dirs(plan: Plan) -> tuple[str, ...]:
    """Directories pgBackRest needs on the machine itself (the harness creates them, owned by postgres)."""
    repo = () if plan.config.backups.repository.type == "s3" else (repo_path(plan),)
    return (*repo, log_dir(plan), lock_dir(plan))


def global_options(plan: Plan) -> dict[str, str]:
    """The [global] section: repository, retention, compression, where pgBackRest logs and locks."""
    backups = plan.config.backups
    options = {
        "repo1-path": repo_path(plan),
        "repo1-retention-full-type": "count",
        "repo1-retention-full": str(backups.retention_full),
        "compress-type": backups.compression,
        "start-fast": "y",  # back up after an immediate checkpoint, not a spread one (minutes on a quiet cluster)
        "archive-timeout": "120",
        "log-path": log_dir(plan),
        "lock-path": lock_dir(plan),
        "log-level-console": "warn",
        "log-level-file": "info",
    }
    if backups.compression_level is not None:
        options["compress-level"] = str(backups.compression_level)
    s3 = backups.repository.s3
    if backups.repository.type == "s3" and s3 is not None:
        options |= {
            "repo1-type": "s3",
            "repo1-s3-endpoint": s3.endpoint.split(":")[0],
            "repo1-s3-bucket": s3.bucket,
            "repo1-s3-region": s3.region,
            "repo1-s3-uri-style": s3.uri_style,
            "repo1-storage-verify-tls": "y" if s3.verify_tls else "n",
        }
        if ":" in s3.endpoint:
            options["repo1-storage-port"] = s3.endpoint.split(":")[1]
    return options


def stanza_options(plan: Plan, member: Member) -> dict[str, str]:
    """The member's group stanza: its own data directory, port and socket (pgBackRest connects as postgres)."""
    return {
        "pg1-path": member.data_dir,
        "pg1-port": str(member.postgres.port),
        "pg1-socket-path": plan.socket_dir,
        "pg1-user": SUPERUSER,
    }


def render_pgbackrest(plan: Plan, member: Member) -> str:
    sections = {"global": global_options(plan), stanza(plan, member.group): stanza_options(plan, member)}
    lines = [f"# pgBackRest settings of {member.name}; rendered by citus-cluster from backups.* of the stack."]
    for name, options in sections.items():
        lines += ["", f"[{name}]", *(f"{key}={value}" for key, value in options.items())]
    return "\n".join(lines) + "\n"


def command(plan: Plan, member: Member, *args: str) -> list[str]:
    """argv of a pgBackRest command for the member's stanza, with its config file."""
    return [BINARY, f"--config={config_path(member)}", f"--stanza={stanza(plan, member.group)}", *args]


def into_data_dir(member: Member, argv: list[str]) -> str:
    """A restore command line that first makes the member's data directory: pgBackRest restores only into an
    existing one, and Patroni hands over none (a new member) or an emptied one."""
    return shlex.join(["sh", "-c", f"mkdir -p -m 0700 {shlex.quote(member.data_dir)} && exec {shlex.join(argv)}"])


def archive_command(plan: Plan, member: Member) -> str:
    return shlex.join(command(plan, member, "archive-push")) + ' "%p"'


def restore_command(plan: Plan, member: Member, *extra: str) -> str:
    return shlex.join(command(plan, member, *extra, "archive-get")) + ' %f "%p"'


def patroni_postgresql(plan: Plan, member: Member) -> dict[str, Any]:
    """What Patroni's `postgresql:` section gains with backups on: new replicas restore from the repository
    first (the primary is not read for the bulk copy) and fall back to pg_basebackup when the repository has no
    backup yet; recovery fetches WAL from the archive the primary may already have recycled."""
    if not plan.config.backups.enabled:
        return {}
    return {
        "create_replica_methods": ["pgbackrest", "basebackup"],
        "pgbackrest": {
            "command": into_data_dir(member, command(plan, member, "--delta", "restore")),
            "keep_data": True,
            "no_params": True,
        },
        "recovery_conf": {"restore_command": restore_command(plan, member)},
    }


def archive_parameters(plan: Plan, member: Member) -> dict[str, Any]:
    """postgresql.conf settings for WAL archiving; with archive_mode on only the primary archives."""
    if not plan.config.backups.enabled:
        return {}
    return {"archive_mode": "on", "archive_command": archive_command(plan, member), "archive_timeout": 60}


def bootstrap_from_backup(plan: Plan, member: Member, source_repo: str, point: str,
                          backup_set: str | None = None) -> dict[str, Any]:
    """Patroni's `bootstrap:` for a cluster restored to restore point `point` from the repository at
    `source_repo`: Patroni runs pgBackRest into the empty data directory, starts PostgreSQL with the recovery
    target below, waits for the promotion at the point, and only then takes its group's leader key.

    `backup_set` is the backup to start from: for a named target pgBackRest takes the latest backup unless told,
    and a backup that ended after the point can never replay to it."""
    source = f"--repo1-path={source_repo}"
    chosen = (f"--set={backup_set}",) if backup_set else ()
    return {
        "method": "pgbackrest",
        "pgbackrest": {
            "command": into_data_dir(member, command(plan, member, source, *chosen, "--type=name",
                                                     f"--target={point}", "restore")),
            "no_params": True,
            "keep_existing_recovery_conf": False,
            "recovery_conf": {
                "recovery_target_name": point,
                "recovery_target_action": "promote",
                "recovery_target_timeline": "latest",
                "restore_command": restore_command(plan, member, source),
            },
        },
    }
