"""prometheus-pgbouncer-exporter beside every coordinator member's PgBouncer: its config, its environment, its
command line, the launcher it runs under. Pure: plan in, text out.

Debian 12's package (1.7, Python) is run through cluster/render/pgbouncer_exporter_launcher.py, shipped beside
its config: the package alone reads SHOW STATS columns PgBouncer renamed in 1.8 and exits, never reconnects after
a PgBouncer restart, and serves plain HTTP (the launcher's docstring says how each is met). What it serves, as
`pgbouncer_*` series labelled by database (and user, for pools): clients active and waiting per pool and how long
the oldest has waited, server connections per pool, pooled transactions/queries/bytes/time, pool sizes, and
PgBouncer's overall client/server/pool counts.

It logs in to PgBouncer's admin console (database `pgbouncer`) as cluster.roles.MONITORING_USER, which
pgbouncer.ini lists in stats_users (read-only SHOW commands), over TLS verified like every client (PgBouncer
requires client TLS): every libpq setting comes from the environment, the password from a pgpass file only the
server user reads (PGPASSFILE; written by the harness, uploaded by the component, never rendered here).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cluster.plan import MONITORING_USER, SSLMODE, Member, Plan
from cluster.tls import TlsPaths

PACKAGE = "prometheus-pgbouncer-exporter"  # Debian's package (and the binary the launcher stands in for)
PYTHON = "/usr/bin/python3"  # the system interpreter, which has the package's modules
CONFIG_FILE = "exporter.conf"
LAUNCHER_FILE = "launcher.py"
PGPASS_FILE = "monitor.pgpass"  # written by the harness / uploaded by the component, 0600, never rendered
DOCKER_DIR = "/etc/citus-cluster/pgbouncer-exporter"
ADMIN_DATABASE = "pgbouncer"  # PgBouncer's admin console
APPLICATION_NAME = "pgbouncer_exporter"
CONNECT_TIMEOUT = 5  # seconds; a scrape must not hang on a PgBouncer that does not answer
LICENCE = "/usr/share/doc/prometheus-pgbouncer-exporter/copyright"  # what the exporter links from its index page
LAUNCHER_SOURCE = Path(__file__).with_name("pgbouncer_exporter_launcher.py")


def pgbouncer_exporter_dir(plan: Plan, member: Member) -> str:
    """Beside the member's PgBouncer directory in the harness; a fixed path in its own container."""
    if member.pooler is None:
        raise ValueError(f"{member.name} runs no PgBouncer (coordinator members only, with pooling.enabled)")
    if plan.layout == "docker":
        return DOCKER_DIR
    return str(PurePosixPath(member.pooler.config_dir).parent / "pgbouncer-exporter")


def render_config(plan: Plan, member: Member) -> str:
    """The exporter's own config file (configargparse's `key = value`); no credential in it."""
    assert member.pooler is not None
    pooler, exporter = member.pooler.endpoint, member.pooler.exporter
    settings = {
        "host": exporter.listen,
        "port": exporter.port,
        "pgbouncer-host": pooler.host,  # a name the member's certificate carries: verify-full succeeds
        "pgbouncer-port": pooler.port,
        "pgbouncer-user": MONITORING_USER,
        "licence-location": LICENCE,
    }
    lines = [f"# prometheus-pgbouncer-exporter of {member.name}'s PgBouncer ({pooler.address}).",
             "# Rendered by citus-cluster from the stack config; edit the config, not this file.",
             *(f"{key} = {value}" for key, value in settings.items())]
    return "\n".join(lines) + "\n"


def launcher_source() -> str:
    return LAUNCHER_SOURCE.read_text()


def render_pgbouncer_exporter_files(plan: Plan, member: Member) -> dict[str, str]:
    """The exporter's credential-free files, by name inside pgbouncer_exporter_dir."""
    return {CONFIG_FILE: render_config(plan, member), LAUNCHER_FILE: launcher_source()}


def pgbouncer_exporter_env(plan: Plan, member: Member) -> dict[str, str]:
    """libpq's settings for the admin-console login (no secret: the password is in the PGPASSFILE)."""
    return {
        "PGSSLMODE": SSLMODE,
        "PGSSLROOTCERT": TlsPaths(member.tls_dir).ca,
        "PGPASSFILE": f"{pgbouncer_exporter_dir(plan, member)}/{PGPASS_FILE}",
        "PGAPPNAME": APPLICATION_NAME,
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    }


def pgbouncer_exporter_command(plan: Plan, member: Member, python: str = PYTHON) -> list[str]:
    directory = pgbouncer_exporter_dir(plan, member)
    tls = TlsPaths(member.tls_dir)  # /metrics is served with the member's own certificate
    return [python, f"{directory}/{LAUNCHER_FILE}", f"--web-cert={tls.cert}", f"--web-key={tls.key}",
            f"--config={directory}/{CONFIG_FILE}"]


def render_pgpass(password: str) -> str:
    """The secret file (PGPASSFILE): the monitoring role's password for PgBouncer's admin database only."""
    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    return f"*:*:{ADMIN_DATABASE}:{escaped(MONITORING_USER)}:{escaped(password)}\n"
