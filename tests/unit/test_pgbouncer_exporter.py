"""prometheus-pgbouncer-exporter beside every coordinator member's PgBouncer (issue 15 item 3): plan ports, rendered
files without a password, PgBouncer's stats user and auth file, the image and the Pulumi graph, without processes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cluster.config import load_config
from cluster.plan import CONTAINER_PORTS, MONITORING_USER, LocalLayout, PortBook, build_plan, ports_needed
from cluster.provision.roles import monitoring_verifier
from cluster.provision.scram import pooled_verifier, verifies
from cluster.provision.target import target_from_plan
from cluster.render import pgbouncer_exporter as pe
from cluster.render import render_pgbouncer, render_pgbouncer_auth
from cluster.render.dockerfile import render_monitoring_dockerfile
from cluster.render.pgbouncer_exporter_launcher import POOLS, STATS
from tests.unit.pulumi_mocks import Deployment, deploy
from tests.unit.test_component import SECRET_SIG
from tests.unit.test_pgbouncer import ini, plan_for


def local_plan():  # type: ignore[no-untyped-def]
    config = load_config({}).config
    ports = PortBook(free=range(42000, 42000 + ports_needed(config)))
    return build_plan(config, LocalLayout("/tmp/h", ports, "/usr/lib/postgresql/15/bin"))


def test_every_coordinator_pgbouncer_has_an_exporter_port_from_the_one_table() -> None:
    plan = plan_for()
    for m in plan.coordinators:
        assert m.pooler is not None
        assert m.pooler.exporter.host == m.host and m.pooler.exporter.port == CONTAINER_PORTS["pooler-exporter"]
    local = local_plan()
    ports = [p.port for m in local.coordinators if m.pooler for p in (m.pooler.endpoint, m.pooler.exporter)]
    assert len(set(ports)) == 4  # PgBouncer and its exporter, each member its own


def test_config_names_the_members_pgbouncer_and_the_monitoring_role_and_no_password() -> None:
    plan = plan_for()
    member = plan.coordinators[1]
    config = dict(line.split(" = ", 1) for line in pe.render_config(plan, member).splitlines()
                  if not line.startswith("#"))
    assert config == {"host": "0.0.0.0", "port": "9127", "pgbouncer-host": member.name, "pgbouncer-port": "6432",
                      "pgbouncer-user": MONITORING_USER, "licence-location": pe.LICENCE}
    env = pe.pgbouncer_exporter_env(plan, member)
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/citus-cluster/tls/ca.crt"
    assert env["PGPASSFILE"] == f"{pe.DOCKER_DIR}/{pe.PGPASS_FILE}"
    argv = pe.pgbouncer_exporter_command(plan, member)
    assert argv[:2] == [pe.PYTHON, f"{pe.DOCKER_DIR}/{pe.LAUNCHER_FILE}"]
    assert "--web-cert=/etc/citus-cluster/tls/server.crt" in argv
    # The renderers never get the password; nothing they render names one (the pgpass file is apart, secret).
    for text in [pe.render_config(plan, member), *env.values(), *argv]:
        assert "password" not in text.lower() and "pass=" not in text.lower()
    assert set(pe.render_pgbouncer_exporter_files(plan, member)) == {pe.CONFIG_FILE, pe.LAUNCHER_FILE}
    assert pe.render_pgpass("a:b\\c") == "*:*:pgbouncer:monitor:a\\:b\\\\c\n"  # libpq's escaping


def test_harness_files_sit_beside_the_members_pgbouncer() -> None:
    plan = local_plan()
    member = plan.coordinators[0]
    assert pe.pgbouncer_exporter_dir(plan, member) == f"/tmp/h/{member.name}/pgbouncer-exporter"
    assert pe.render_config(plan, member).count(f"pgbouncer-port = {member.pooler.endpoint.port}") == 1
    with pytest.raises(ValueError, match="no PgBouncer"):
        pe.pgbouncer_exporter_dir(plan, plan.groups[1][0])


def test_launcher_ships_standalone_and_maps_pgbouncer_columns_to_distinct_names() -> None:
    source = pe.launcher_source()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import | ast.ImportFrom) for alias in getattr(node, "names", [])}
    modules = {node.module.split(".")[0] for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module}
    assert "cluster" not in imported | modules  # it runs in the exporter's container, without the product
    names = [name for name, _ in (*STATS.values(), *POOLS.values())]
    assert len(names) == len(set(names))
    lists = {"databases", "users", "pools", "free_clients", "used_clients", "login_clients", "free_servers",
             "used_servers", "dns_names", "dns_zones", "dns_queries", "dns_pending", "pool_size", "reserve_pool"}
    assert not set(names) & lists  # never a second family of the package's LISTS/DATABASES names
    assert "total_requests" not in STATS  # gone since PgBouncer 1.8: the package's KeyError
    assert POOLS["maxwait"][0] == "pool_max_wait_seconds"  # what the alert reads


def test_pgbouncer_lists_the_monitoring_role_as_stats_user_where_exporters_run() -> None:
    monitored = plan_for({"monitoring": {"enabled": True}})
    parsed = ini(render_pgbouncer(monitored, monitored.coordinators[0]))
    assert parsed["pgbouncer"]["stats_users"] == MONITORING_USER
    assert "admin_users" not in parsed["pgbouncer"]
    assert ini(render_pgbouncer(local_plan(), local_plan().coordinators[0]))["pgbouncer"]["stats_users"] == "monitor"
    plain = plan_for()  # Docker without monitoring: no exporter, no role
    assert "stats_users" not in ini(render_pgbouncer(plain, plain.coordinators[0]))["pgbouncer"]


def test_auth_file_lists_the_monitoring_role_by_the_verifier_the_server_gets() -> None:
    su = pooled_verifier("su-pw", "postgres", "pooler-pw")
    mon = pooled_verifier("mon-pw", MONITORING_USER, "pooler-pw")
    text = render_pgbouncer_auth("pooler-pw", su, mon)
    assert text.splitlines()[-1] == f'"monitor" "{mon}"'
    assert "mon-pw" not in text and verifies(mon, "mon-pw")
    with pytest.raises(ValueError, match="monitor must be a SCRAM verifier"):
        render_pgbouncer_auth("pooler-pw", su, "mon-pw")
    target = target_from_plan(plan_for({"monitoring": {"enabled": True}}), "su-pw", "app-pw",
                              monitoring_password="mon-pw", pooler_password="pooler-pw")
    assert monitoring_verifier(target) == mon  # what provisioning sets on every group's leader
    unpooled = target_from_plan(plan_for({"pooling": {"enabled": False}}), "su-pw", "app-pw",
                                monitoring_password="mon-pw", pooler_password="pooler-pw")
    assert monitoring_verifier(unpooled) is None


def test_monitoring_image_installs_the_package() -> None:
    dockerfile = render_monitoring_dockerfile(plan_for({"monitoring": {"enabled": True}}))
    assert "prometheus-pgbouncer-exporter" in dockerfile.split("apt-get install", 1)[1].split("rm -rf", 1)[0]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return deploy({"monitoring": {"enabled": True}}, tmp_path_factory.mktemp("build"))


def test_a_pgbouncer_exporter_sidecar_per_coordinator_member(monitored: Deployment) -> None:
    plan = plan_for({"monitoring": {"enabled": True}})
    image = monitored.named("monitoring-image").inputs["imageName"]
    for member in plan.coordinators:
        sidecar = monitored.named(f"{member.name}-pgbouncer-exporter")
        assert monitored.named(member.name).urn in sidecar.dependencies
        assert sidecar.inputs["networkMode"] == f"container:{member.name}-id"
        assert sidecar.inputs["image"] == image
        argv = pe.pgbouncer_exporter_command(plan, member)
        assert [*sidecar.inputs["entrypoints"], *sidecar.inputs["command"]] == argv
        assert sidecar.inputs["envs"] == [f"{k}={v}" for k, v in pe.pgbouncer_exporter_env(plan, member).items()]
        uploads = {u["file"]: u for u in sidecar.inputs["uploads"]["value"]}
        assert uploads[f"{pe.DOCKER_DIR}/{pe.CONFIG_FILE}"]["content"] == pe.render_config(plan, member)
        assert uploads[f"{pe.DOCKER_DIR}/{pe.LAUNCHER_FILE}"]["content"] == pe.launcher_source()
        pgpass = uploads[f"{pe.DOCKER_DIR}/{pe.PGPASS_FILE}"]
        assert (pgpass["owner"], pgpass["group"], pgpass["permissions"]) == ("999", "999", "0600")
        assert pgpass["content"] == pe.render_pgpass("generated-monitoringPassword")
        assert SECRET_SIG in sidecar.inputs["uploads"]  # the password file travels as a secret
        # The member's PgBouncer lists the monitoring role by the verifier provisioning sets.
        auth = {u["file"]: u for u in monitored.named(member.name).inputs["uploads"]["value"]}[
            member.pooler.auth_file]["content"]
        assert f'"monitor" "{pooled_verifier("generated-monitoringPassword", "monitor", "generated-poolerPassword")}"' \
            in auth
    assert not [r for r in monitored.registrations
                if r.name.endswith("-pgbouncer-exporter") and "worker" in r.name]
    prometheus = monitored.named("citus-prometheus")
    assert {f"{m.name}-pgbouncer-exporter" for m in plan.coordinators} <= {
        monitored.by_urn(u).name for u in prometheus.dependencies}
    config = {u["file"]: u for u in prometheus.inputs["uploads"]["value"]}[
        "/etc/citus-cluster/prometheus/prometheus.yml"]["content"]
    assert "job_name: pgbouncer" in config and "citus-coordinator-1:9127" in config


def test_no_pgbouncer_exporter_without_monitoring_or_without_pooling(tmp_path: Path) -> None:
    for raw in ({}, {"monitoring": {"enabled": True}, "pooling": {"enabled": False}}):
        d = deploy(raw, tmp_path / str(len(raw)))
        assert not [r.name for r in d.registrations if r.name.endswith("-pgbouncer-exporter")], raw
