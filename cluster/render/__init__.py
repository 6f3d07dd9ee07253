"""Pure renderers: plan in, file text out. The Pulumi program and the test harness consume the same text."""

from __future__ import annotations

from cluster.plan import Plan
from cluster.render.dockerfile import image_spec, render_dockerfile
from cluster.render.etcd import etcd_command
from cluster.render.exporter import render_queries
from cluster.render.haproxy import LAUNCHER, render_haproxy
from cluster.render.patroni import (
    CONFIG_FILE,
    SECRETS_FILE,
    render_patroni,
    render_patroni_secrets,
)
from cluster.render.pgbackrest import config_path as pgbackrest_config_path
from cluster.render.pgbackrest import render_pgbackrest
from cluster.render.pgbouncer import render_pgbouncer, render_pgbouncer_auth
from cluster.render.prometheus import render_prometheus

__all__ = [
    "CONFIG_FILE",
    "SECRETS_FILE",
    "etcd_command",
    "image_spec",
    "render_dockerfile",
    "render_files",
    "render_haproxy",
    "render_patroni",
    "render_patroni_secrets",
    "render_pgbackrest",
    "render_pgbouncer",
    "render_pgbouncer_auth",
]


def render_files(plan: Plan) -> dict[str, str]:
    """Every credential-free file of the cluster, by path relative to an output directory."""
    files = {"Dockerfile": render_dockerfile(plan), "haproxy.cfg": render_haproxy(plan),
             "haproxy-launcher.sh": LAUNCHER}
    for member in plan.members:
        files[f"patroni/{member.name}/{CONFIG_FILE}"] = render_patroni(plan, member)
        if plan.config.backups.enabled:
            name = pgbackrest_config_path(member).rsplit("/", 1)[1]
            files[f"patroni/{member.name}/{name}"] = render_pgbackrest(plan, member)
        if member.pooler is not None:
            files[f"pgbouncer/{member.name}/pgbouncer.ini"] = render_pgbouncer(plan, member)
    files |= {f"prometheus/{name}": text for name, text in render_prometheus(plan).items()}
    files["exporter/queries.yml"] = render_queries(plan)  # every member's prometheus-postgres-exporter
    return files
