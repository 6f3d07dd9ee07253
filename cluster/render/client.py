"""What a client on the user's machine needs besides the CA: a libpq service file and a password file.

`PGSERVICEFILE=pg_service.conf psql service=citus-admin` then connects verified (sslmode=verify-full against the
cluster CA) with the password read from a 0600 file by libpq itself: no password or DSN in argv, where every
local user could read it in `ps`. One service per DSN output (cluster/plan.py `dsn_outputs`), same names.
"""

from __future__ import annotations

from collections.abc import Mapping

from cluster.plan import SSLMODE, DsnOutput, Plan


def service_name(plan: Plan, output: DsnOutput) -> str:
    """`admin_dsn` of cluster `citus` -> `citus-admin`, `app_ro_dsn` -> `citus-app-ro`."""
    return f"{plan.scope}-{output.name.removesuffix('_dsn').replace('_', '-')}"


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def render_service_file(plan: Plan, ca_file: str, passfile: str) -> str:
    """pg_service.conf: every exported endpoint as a named service (no passwords in it)."""
    blocks = [f"# libpq services of cluster {plan.scope}: PGSERVICEFILE=<this file> psql service=<name>"]
    for output in plan.dsn_outputs():
        blocks.append("\n".join([
            f"[{service_name(plan, output)}]",
            f"host={plan.client_host}",
            f"port={plan.balancer.published[output.listener]}",
            f"dbname={plan.config.citus.database}",
            f"user={plan.user(output.credential)}",
            f"sslmode={SSLMODE}",
            f"sslrootcert={ca_file}",
            f"passfile={passfile}",
            *([f"options={options}"] if (options := plan.session_options(output.listener)) else []),
        ]))
    return "\n\n".join(blocks) + "\n"


def render_passfile(plan: Plan, passwords: Mapping[str, str]) -> str:
    """~/.pgpass format for every service; `passwords` maps a credential name (Passwords field) to its value."""
    lines = []
    for output in plan.dsn_outputs():
        fields = [plan.client_host, str(plan.balancer.published[output.listener]), plan.config.citus.database,
                  plan.user(output.credential), passwords[output.credential]]
        lines.append(":".join(_passfile_field(f) for f in fields))
    return "\n".join(dict.fromkeys(lines)) + "\n"
