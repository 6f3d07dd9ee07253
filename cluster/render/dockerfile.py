"""The database image: the official citusdata/citus image plus PostGIS, pg_cron and Patroni.

Its tag carries a hash of the Dockerfile text, so any change to versions or build steps yields a new tag,
which replaces the containers (and never the volumes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cluster.config.versions import POSTGIS_UNPINNED, citus_image_tag
from cluster.plan import (
    DATABASE_UID,
    DOCKER_BACKUP_MOUNT,
    DOCKER_DATA_MOUNT,
    PATRONI_CONFIG_DIR,
    PATRONI_VENV,
    POOLER_CONFIG_DIR,
    POOLER_CONFIG_NAME,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_DATA_MOUNT,
    Plan,
)
from cluster.render.patroni import PID_FILE as PATRONI_PID_FILE
from cluster.render.pgbackrest import DOCKER_LOG_DIR

CITUS_IMAGE = "citusdata/citus"
PGBOUNCER = "/usr/sbin/pgbouncer"
POOLER_CONFIG = f"{POOLER_CONFIG_DIR}/{POOLER_CONFIG_NAME}"  # the DockerLayout's Pooler.config_path
POOLER_PID_FILE = f"{POOLER_CONFIG_DIR}/pgbouncer.pid"  # its Pooler.pid_file (the rotation's SIGHUP reads it)


def entrypoint() -> list[str]:
    """The container's command: PgBouncer (restarted if it dies) when the member has its file (coordinator
    members with pooling.enabled), then Patroni as PID 1 (it reaps orphans and takes the stop signal). Each one's
    PID goes to its pid file (the shell's own becomes Patroni's by exec): a rotation signals them to reload."""
    script = (f"if [ -f {POOLER_CONFIG} ]; then (while true; do {PGBOUNCER} {POOLER_CONFIG} & "
              f"echo $! > {POOLER_PID_FILE}; wait $!; sleep 1; done) & fi; "
              f"echo $$ > {PATRONI_CONFIG_DIR}/{PATRONI_PID_FILE}; "
              f"exec {PATRONI_VENV}/bin/patroni {PATRONI_CONFIG_DIR}")
    return ["/bin/sh", "-c", script]


@dataclass(frozen=True)
class ImageSpec:
    dockerfile: str
    repository: str
    tag: str

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"


def render_dockerfile(plan: Plan) -> str:
    v = plan.config.versions
    base = f"{CITUS_IMAGE}:{citus_image_tag(v.citus, v.postgres)}"
    postgis_pkg = f"postgresql-{v.postgres}-postgis-3"
    cron_pkg = f"postgresql-{v.postgres}-cron"
    pin = "" if v.postgis == POSTGIS_UNPINNED else f"={v.postgis}.*"
    control = f"/usr/share/postgresql/{v.postgres}/extension/postgis.control"
    # A pinned line must really be what apt installed: fail the build, not the first CREATE EXTENSION.
    check = "" if not pin else f'; \\\n    grep -q "default_version = \'{v.postgis}." {control}'
    return f"""\
# Rendered by citus-cluster from the stack config; edit the config, not this file.
FROM {base}

USER root
# PostGIS from the PostgreSQL apt repository the base image already trusts; pg_cron for the guarded two-phase
# commit recovery (sql/0004); Python for Patroni; pgBackRest for WAL archiving, backups and restores (the
# repository volume is mounted at {DOCKER_BACKUP_MOUNT}); PgBouncer in front of the coordinator members (started
# by the entrypoint where its file is uploaded).
RUN set -eux; \\
    apt-get update; \\
    apt-get install -y --no-install-recommends '{postgis_pkg}{pin}' {cron_pkg} python3 python3-venv \\
        pgbackrest pgbouncer; \\
    rm -rf /var/lib/apt/lists/*{check}

# Patroni in its own venv, pinned, with the etcd3 and psycopg3 extras.
RUN set -eux; \\
    python3 -m venv {PATRONI_VENV}; \\
    {PATRONI_VENV}/bin/pip install --no-cache-dir 'patroni[etcd3,psycopg3]=={v.patroni}'; \\
    {PATRONI_VENV}/bin/patroni --version

RUN set -eux; \\
    test "$(id -u postgres):$(id -g postgres)" = "{DATABASE_UID}:{DATABASE_UID}"; \\
    rm -f {POOLER_CONFIG_DIR}/*; \\
    mkdir -p {PATRONI_CONFIG_DIR} {DOCKER_DATA_MOUNT} {DOCKER_BACKUP_MOUNT} {DOCKER_LOG_DIR} {POOLER_CONFIG_DIR}; \\
    chown -R postgres:postgres {PATRONI_CONFIG_DIR} {DOCKER_DATA_MOUNT} {DOCKER_BACKUP_MOUNT} {DOCKER_LOG_DIR} \\
        {POOLER_CONFIG_DIR}; \\
    chmod 0700 {DOCKER_DATA_MOUNT}

USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT {json.dumps(entrypoint())}
"""


def render_monitoring_dockerfile(plan: Plan) -> str:
    """Prometheus, prometheus-postgres-exporter and prometheus-pgbouncer-exporter from Debian's archive, on the same
    base as the database image (the only registry image the stack needs besides etcd's and HAProxy's): one image
    for the exporters beside each member (and each coordinator member's PgBouncer) and the Prometheus container.
    Runs as postgres, which owns the TSDB directory."""
    v = plan.config.versions
    base = f"{CITUS_IMAGE}:{citus_image_tag(v.citus, v.postgres)}"
    return f"""\
# Rendered by citus-cluster from the stack config (monitoring.enabled); edit the config, not this file.
FROM {base}

USER root
RUN set -eux; \\
    apt-get update; \\
    apt-get install -y --no-install-recommends prometheus prometheus-postgres-exporter \\
        prometheus-pgbouncer-exporter; \\
    rm -rf /var/lib/apt/lists/*; \\
    mkdir -p {PROMETHEUS_DATA_MOUNT} {PROMETHEUS_CONFIG_DIR}; \\
    chown postgres:postgres {PROMETHEUS_DATA_MOUNT} {PROMETHEUS_CONFIG_DIR}; \\
    prometheus --version; prometheus-postgres-exporter --version; prometheus-pgbouncer-exporter --version

USER postgres
ENTRYPOINT []
"""


def monitoring_image_spec(plan: Plan) -> ImageSpec:
    dockerfile = render_monitoring_dockerfile(plan)
    digest = hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    return ImageSpec(dockerfile=dockerfile, repository=f"{plan.config.name}-monitoring", tag=digest)


def image_spec(plan: Plan) -> ImageSpec:
    dockerfile = render_dockerfile(plan)
    v = plan.config.versions
    digest = hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    return ImageSpec(
        dockerfile=dockerfile,
        repository=f"{plan.config.name}-node",
        tag=f"pg{v.postgres}-citus{v.citus}-{digest}",
    )
