"""The resource graph, proven with Pulumi mocks: no engine, no Docker daemon."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.render import SECRETS_FILE, image_spec, render_patroni, render_pgbackrest
from cluster.render.haproxy import LAUNCHER, courier_command
from tests.unit.pulumi_mocks import Deployment, deploy

SECRET_SIG = "4dabf18193072939515e22adb298388d"
LARGE = {"coordinator": {"members": 3}, "workers": {"groups": 4, "members": 3}}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return deploy({}, tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return deploy(LARGE, tmp_path_factory.mktemp("build"))


def type_counts(d: Deployment) -> Counter:
    return Counter(r.type.split(":")[-1] for r in d.registrations)


def is_secret(value: object) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def test_dev_stack_declares_exactly_these_resources(dev: Deployment) -> None:
    # 2 coordinators + 3 worker groups x 2 = 8 database members; 3 etcd; 1 HAProxy and its stats courier.
    assert type_counts(dev) == {
        "CitusCluster": 1,
        "Network": 1,
        "Image": 1,
        "RemoteImage": 2,
        "RandomPassword": 6,  # superuser, replication, REST API, stats, app, PgBouncer's auth_user
        "Volume": 8 + 3 + 1 + 1,  # + the backup repository, HAProxy's secrets
        "Container": 8 + 3 + 1 + 1,
        "Provisioning": 1,  # dynamic resources, each under its own type
        "Certificates": 1,  # the stack's CA and per-process certificates, kept in the state
        "WorkerGroup": 3,  # one registration per worker group
    }


def test_large_stack_scales_members_volumes_and_containers(large: Deployment) -> None:
    # 3 coordinators + 4 worker groups x 3 = 15 database members.
    counts = type_counts(large)
    assert counts["Volume"] == 15 + 3 + 1 + 1
    assert counts["Container"] == 15 + 3 + 1 + 1
    assert counts["Network"] == 1 and counts["Image"] == 1


@pytest.mark.parametrize("which", ["dev", "large"])
def test_every_container_is_on_the_cluster_network(which: str, request: pytest.FixtureRequest) -> None:
    d: Deployment = request.getfixturevalue(which)
    network = d.of_type("Network")[0].inputs["name"]
    assert d.named("citus-haproxy-courier").inputs["networkMode"] == "none"  # a file copy: no network at all
    for container in d.of_type("Container"):
        if container.name == "citus-haproxy-courier":
            continue
        attachments = container.inputs["networksAdvanced"]
        assert [a["name"] for a in attachments] == [network], container.name
        assert attachments[0]["aliases"] == [container.inputs["name"]]


@pytest.mark.parametrize("which", ["dev", "large"])
def test_every_database_member_has_its_own_volume(which: str, request: pytest.FixtureRequest) -> None:
    """Data volumes are private; the one backup repository volume is mounted by every database member (HAProxy's
    secrets volume by HAProxy and its courier, test_haproxy_runs_under_its_launcher...)."""
    d: Deployment = request.getfixturevalue(which)
    mounts = [(c.name, v["volumeName"]) for c in d.of_type("Container") for v in c.inputs.get("volumes", [])]
    shared = {"citus-backups", "citus-haproxy-secrets"}
    volumes = [name for _, name in mounts if name not in shared]
    assert len(volumes) == len(set(volumes)), "a data volume is mounted by two containers"
    assert set(volumes) | shared == {v.inputs["name"] for v in d.of_type("Volume")}
    members = [c for c in d.of_type("Container") if "-coordinator-" in c.name or "-worker" in c.name]
    for member in members:
        paths = {v["volumeName"]: v["containerPath"] for v in member.inputs["volumes"]}
        assert paths == {f"{member.name}-data": "/var/lib/postgresql/data", "citus-backups": "/var/lib/pgbackrest"}


def test_no_port_is_published_beyond_loopback_by_default(dev: Deployment) -> None:
    ports = [p for c in dev.of_type("Container") for p in c.inputs.get("ports", [])]
    assert ports, "the stack must publish HAProxy and member ports"
    assert {p["ip"] for p in ports} == {"127.0.0.1"}
    published = [int(p["external"]) for p in ports]
    assert len(published) == len(set(published))
    assert {5432, 5433, 7000} <= set(published)


def test_public_bind_only_when_opted_in(tmp_path: Path) -> None:
    d = deploy({"ports": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}, tmp_path)
    ips = {p["ip"] for c in d.of_type("Container") for p in c.inputs.get("ports", [])}
    assert ips == {"0.0.0.0"}
    assert d.outputs["haproxy_stats_url"] == "https://127.0.0.1:7000/"


def test_dsn_outputs_and_the_stats_password_are_secret_and_other_outputs_are_plain(dev: Deployment) -> None:
    assert dev.secret_outputs == {"admin_dsn", "app_dsn", "app_ro_dsn", "haproxy_stats_password"}
    ca = build_plan(load_config({}).config).client_ca_file
    tls = f"?sslmode=verify-full&sslrootcert={ca}"
    assert dev.outputs["app_dsn"] == f"postgresql://app:generated-appPassword@127.0.0.1:5432/citus{tls}"
    ro_options = "&options=-c%20citus.use_secondary_nodes%3Dalways%20-c%20default_transaction_read_only%3Don"
    assert dev.outputs["app_ro_dsn"] == (
        f"postgresql://app:generated-appPassword@127.0.0.1:5433/citus{tls}{ro_options}")
    assert dev.outputs["admin_dsn"] == f"postgresql://postgres:generated-superuserPassword@127.0.0.1:5432/citus{tls}"
    assert dev.outputs["haproxy_stats_password"] == "generated-statsPassword"
    assert dev.outputs["haproxy_stats_url"] == "https://127.0.0.1:7000/"
    assert dev.outputs["ca_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert [n["name"] for n in dev.outputs["nodes"] if n["intended"] == "leader"] == [
        "citus-coordinator-0",
        "citus-worker1-0",
        "citus-worker2-0",
        "citus-worker3-0",
    ]


def plain_text(value: object) -> str:
    """Everything in `value` that is not wrapped as a secret."""
    if is_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(plain_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(plain_text(v) for v in value)
    return str(value)


def test_passwords_appear_in_inputs_only_as_secrets(tmp_path: Path) -> None:
    d = deploy({}, tmp_path, secrets={"superuserPassword": "Supplied-Password-1"})
    carriers = 0
    for registration in d.registrations:
        for key, value in registration.inputs.items():
            assert "Supplied-Password-1" not in plain_text(value), f"{registration.name}.{key}"
            assert "generated-" not in plain_text(value), f"{registration.name}.{key}"
            assert "PRIVATE KEY" not in plain_text(value), f"{registration.name}.{key}"
            carriers += is_secret(value) and key != "__provider"  # Pulumi keeps dynamic providers secret
    # 8 members carry the secrets file and their TLS key, HAProxy its TLS key, its courier the stats-password
    # file (in uploads; nothing in an environment), the 3 etcd members their TLS key, the 4 dynamic resources
    # (provisioning + 3 worker groups) the DSNs they connect with, and provisioning the members' secret files it
    # delivers on a rotation and the stats password it waits for HAProxy to take.
    assert carriers == 8 + 1 + 1 + 3 + 4 + 1 + 1
    for name in ("citus-haproxy", "citus-haproxy-courier"):
        assert is_secret(d.named(name).inputs["uploads"]) and not d.named(name).inputs.get("envs")


def test_haproxy_runs_under_its_launcher_and_a_courier_writes_its_stats_password(dev: Deployment) -> None:
    """A new stats password must not replace the HAProxy container: the password is the upload of a one-shot
    courier container (replaced, deleted first, for a new password) that copies it into a volume HAProxy mounts
    read-only; HAProxy runs under its launcher, which reloads it (SIGUSR2, master-worker) when that file changes."""
    plan = build_plan(load_config({}).config)
    b = plan.balancer
    haproxy = dev.named("citus-haproxy")
    courier = dev.named("citus-haproxy-courier")
    uploads = {u["file"]: u for u in haproxy.inputs["uploads"]["value"]}
    assert haproxy.inputs["entrypoints"] == ["/bin/sh", b.launcher_path, b.secrets_path, "haproxy", "-W", "-db",
                                             "-f", b.config_path, "-f", b.secrets_path]
    assert uploads[b.launcher_path]["content"] == LAUNCHER
    assert b.secrets_path not in uploads and "insecure-password" not in uploads[b.config_path]["content"]
    mount = haproxy.inputs["volumes"][0]
    assert (mount["containerPath"], mount["readOnly"], mount["volumeName"]) == (b.secrets_dir, True, b.secrets_volume)
    assert courier.urn in haproxy.dependencies

    staged = courier.inputs["uploads"]["value"][0]
    assert staged["permissions"] == "0600" and "userlist stats_users" in staged["content"]
    assert staged["content"].count("generated-statsPassword") == 1
    assert courier.inputs["entrypoints"] == courier_command(plan, staged["file"], "99")
    assert courier.inputs["volumes"][0]["volumeName"] == b.secrets_volume
    assert courier.inputs["volumes"][0]["containerPath"] == b.secrets_dir
    assert (courier.inputs["attach"], courier.inputs["mustRun"], courier.inputs["networkMode"]) == (True, False, "none")
    assert courier.delete_before_replace and not haproxy.delete_before_replace


def test_supplied_secret_password_is_used_and_not_generated(tmp_path: Path) -> None:
    d = deploy({}, tmp_path, secrets={"superuserPassword": "s3cr3t/pw-long-enough"})
    assert "superuserPassword" not in {r.name for r in d.of_type("RandomPassword")}
    assert "postgres:s3cr3t%2Fpw-long-enough@" in d.outputs["admin_dsn"]
    assert "admin_dsn" in d.secret_outputs


def test_members_ignore_later_changes_to_exactly_their_secret_files(dev: Deployment) -> None:
    """A rotation must not replace the containers (every PostgreSQL would restart): the stack ignores changes to
    the content of the secret uploads, and provisioning delivers them (it gets the files and container IDs)."""
    secret_files = {SECRETS_FILE, "auth_user.txt"}
    members = [c for c in dev.of_type("Container") if "-coordinator-" in c.name or "-worker" in c.name]
    members = [c for c in members if not c.name.endswith("exporter")]
    assert len(members) == 8
    for container in members:
        uploads = container.inputs["uploads"]["value"]
        ignored = {int(path.split("[")[1].split("]")[0]) for path in container.ignore_changes}
        assert all(path.endswith("].content") for path in container.ignore_changes)
        assert {uploads[i]["file"].rsplit("/", 1)[1] for i in ignored} <= secret_files, container.name
        expected = 2 if "-coordinator-" in container.name else 1
        assert len(ignored) == expected, container.name
    provisioning = dev.named("provisioning").inputs
    assert is_secret(provisioning["secrets"])
    assert set(provisioning["containers"]) == {c.name for c in members}


def test_haproxy_depends_on_every_database_member(dev: Deployment) -> None:
    haproxy = dev.named("citus-haproxy")
    members = {c.urn for c in dev.of_type("Container") if "-coordinator-" in c.name or "-worker" in c.name}
    assert len(members) == 8
    assert members <= set(haproxy.dependencies)


def test_members_start_after_etcd(dev: Deployment) -> None:
    etcd = {c.urn for c in dev.of_type("Container") if "-etcd-" in c.name}
    for member in (c for c in dev.of_type("Container") if "-worker" in c.name or "-coordinator-" in c.name):
        assert etcd <= set(member.dependencies), member.name


def test_every_resource_is_a_child_of_the_component(dev: Deployment) -> None:
    component = dev.of_type("CitusCluster")[0]
    assert all(r.parent == component.urn for r in dev.registrations if r is not component)


def test_member_uploads_are_the_rendered_patroni_files(dev: Deployment) -> None:
    plan = build_plan(load_config({}).config)
    member = plan.members[3]
    container = dev.named(member.name)
    uploads = container.inputs["uploads"]["value"]
    assert uploads[0] == {"file": "/etc/patroni/10-patroni.yml", "content": render_patroni(plan, member)}
    assert uploads[1]["file"] == "/etc/patroni/90-secrets.yml"
    # Only the database user (uid 999 in the image) may read the credentials.
    assert (uploads[1]["owner"], uploads[1]["group"], uploads[1]["permissions"]) == ("999", "999", "0600")
    assert uploads[2] == {"file": "/etc/patroni/pgbackrest.conf", "content": render_pgbackrest(plan, member)}


def test_s3_repository_has_no_volume_and_its_keys_reach_members_only_as_secrets(tmp_path: Path) -> None:
    s3 = {"backups": {"repository": {"type": "s3", "s3": {"endpoint": "minio.example:9000", "bucket": "pg-backups"}}}}
    d = deploy(s3, tmp_path, secrets={"backupS3Key": "AKIAEXAMPLE", "backupS3KeySecret": "very-secret-key"})
    assert "citus-backups" not in {v.inputs["name"] for v in d.of_type("Volume")}
    keys = {"backupS3Key": "k", "backupS3KeySecret": "s"}
    plan = build_plan(load_config({**s3, **keys}, secret_keys=keys).config)
    member = d.named(plan.members[0].name)
    assert is_secret(member.inputs["envs"])
    assert "very-secret-key" not in plain_text(member.inputs["uploads"])
    conf = render_pgbackrest(plan, plan.members[0])
    assert "repo1-type=s3" in conf and "repo1-s3-bucket=pg-backups" in conf and "AKIA" not in conf


def test_backups_off_declares_no_repository_and_uploads_no_pgbackrest_config(tmp_path: Path) -> None:
    d = deploy({"backups": {"enabled": False}}, tmp_path)
    assert "citus-backups" not in {v.inputs["name"] for v in d.of_type("Volume")}
    member = d.named(build_plan(load_config({}).config).members[0].name)
    files = [u["file"] for u in member.inputs["uploads"]["value"]]
    assert files[:2] == ["/etc/patroni/10-patroni.yml", "/etc/patroni/90-secrets.yml"]
    assert not [f for f in files if "pgbackrest" in f]  # the rest are the member's TLS files


def test_image_version_change_replaces_containers_not_volumes(tmp_path: Path, dev: Deployment) -> None:
    newer = deploy({"versions": {"patroni": "4.1.6"}}, tmp_path)
    old_image, new_image = dev.named("node-image").inputs["imageName"], newer.named("node-image").inputs["imageName"]
    assert old_image != new_image
    by_name = lambda d, kind: sorted(d.of_type(kind), key=lambda r: r.name)  # noqa: E731
    for old, new in zip(by_name(dev, "Container"), by_name(newer, "Container"), strict=True):
        if "-worker" in old.name or "-coordinator-" in old.name:
            assert (old.inputs["image"], new.inputs["image"]) == (old_image, new_image), old.name
    volumes = [[(v.name, v.inputs) for v in by_name(d, "Volume")] for d in (dev, newer)]
    assert volumes[0] == volumes[1]


def test_volumes_are_retained_on_destroy_only_when_configured(tmp_path: Path, dev: Deployment) -> None:
    assert not any(v.retain_on_delete for v in dev.of_type("Volume"))
    kept = deploy(
        {"storage": {"retainOnDestroy": True}},
        tmp_path,
        secrets={"superuserPassword": "a" * 16, "replicationPassword": "b" * 16},
    )
    # Not HAProxy's secrets volume: it holds only the stats password, which the next stack's courier writes anew.
    assert {v.name for v in kept.of_type("Volume") if not v.retain_on_delete} == {"citus-haproxy-secrets"}


def test_invalid_config_declares_nothing(tmp_path: Path) -> None:
    import pulumi

    with pytest.raises(pulumi.RunError) as raised:
        deploy({"workers": {"groups": 0}, "ports": {"bindAddres": "0.0.0.0"}}, tmp_path)
    assert "workers.groups" in str(raised.value) and "ports.bindAddres" in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # not even the Dockerfile was written


def test_the_dockerfile_is_written_where_the_image_builds_it(dev: Deployment) -> None:
    context = Path(dev.named("node-image").inputs["build"]["context"])
    assert (context / "Dockerfile").read_text() == image_spec(build_plan(load_config({}).config)).dockerfile


def dynamic(d: Deployment, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in d.registrations if r.type.startswith("pulumi-python:dynamic/") and r.name == name)


def test_dynamic_resources_have_their_own_types_and_alias_the_generic_one(dev: Deployment) -> None:
    assert dynamic(dev, "provisioning").type == "pulumi-python:dynamic/citus-cluster:Provisioning"
    assert dynamic(dev, "worker-group-1").type == "pulumi-python:dynamic/citus-cluster:WorkerGroup"
    # Stacks created before the types existed keep their resources (a WorkerGroup deleted would unregister it).
    for name in ("provisioning", "worker-group-1"):
        assert dynamic(dev, name).alias_types == ["pulumi-python:dynamic:Resource"], name


def test_provisioning_runs_after_every_member_and_haproxy(dev: Deployment) -> None:
    provisioning = dynamic(dev, "provisioning")
    containers = {c.urn for c in dev.of_type("Container") if "-etcd-" not in c.name and "-courier" not in c.name}
    assert containers <= set(provisioning.dependencies)
    assert is_secret(provisioning.inputs["target"])
    assert is_secret(provisioning.inputs["stats"])  # waited for after a rotation, never in plain state


def test_scale_in_order_group_containers_before_their_registration(dev: Deployment) -> None:
    groups = {g: dynamic(dev, f"worker-group-{g}").urn for g in (1, 2, 3)}
    for container in dev.of_type("Container"):
        if "-worker" in container.name:
            group = int(container.name.split("-worker")[1].split("-")[0])
            assert groups[group] in container.dependencies, container.name
            assert set(groups.values()) - {groups[group]} - set(container.dependencies) == set(groups.values()) - {
                groups[group]
            }
        if "-coordinator-" in container.name:
            # A whole-cluster destroy removes the coordinator before any group registration: no SQL then.
            assert set(groups.values()) <= set(container.dependencies), container.name


def test_migrations_are_handed_over_with_their_checksums(dev: Deployment) -> None:
    from cluster.config.sources import project_root
    from cluster.provision.migrations import read_migrations

    expected = [{"name": m.name, "checksum": m.checksum, "sql": m.sql} for m in read_migrations(project_root() / "sql")]
    assert dynamic(dev, "provisioning").inputs["migrations"] == expected


def test_any_node_dsn_is_exported_as_a_secret_only_when_configured(dev: Deployment, tmp_path: Path) -> None:
    assert "app_any_node_dsn" not in dev.outputs
    with_any = deploy({"ports": {"anyNode": 5434}}, tmp_path)
    assert "app_any_node_dsn" in with_any.secret_outputs
    assert with_any.outputs["app_any_node_dsn"].startswith("postgresql://app:")
    assert "@127.0.0.1:5434/citus?sslmode=verify-full&" in with_any.outputs["app_any_node_dsn"]
    haproxy = next(c for c in with_any.of_type("Container") if c.name.endswith("haproxy"))
    assert 5434 in {int(p["external"]) for p in haproxy.inputs["ports"]}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return deploy({"monitoring": {"enabled": True}}, tmp_path_factory.mktemp("build"))


def test_monitoring_off_declares_no_exporter_no_prometheus_and_no_url(dev: Deployment) -> None:
    names = {r.name for r in dev.registrations}
    assert not {n for n in names if "exporter" in n or "prometheus" in n or "monitoring" in n}
    assert "prometheus_url" not in dev.outputs
    assert "monitoringPassword" not in {r.name for r in dev.of_type("RandomPassword")}


def test_monitoring_adds_an_exporter_per_member_and_prometheus(monitored: Deployment) -> None:
    from cluster.render.exporter import exporter_env, render_queries
    from cluster.render.prometheus import RULES_FILE

    plan = build_plan(load_config({"monitoring": {"enabled": True}}).config)
    counts = type_counts(monitored)
    # 13 containers (8 members, 3 etcd, HAProxy and its courier) + 8 exporters + 2 PgBouncer exporters (one per
    # coordinator member) + Prometheus
    assert (counts["Container"], counts["Image"], counts["Volume"]) == (13 + 8 + 2 + 1, 2, 13 + 1)
    assert "monitoringPassword" in {r.name for r in monitored.of_type("RandomPassword")}
    image = monitored.named("monitoring-image").inputs["imageName"]
    for member in plan.members:
        sidecar = monitored.named(f"{member.name}-exporter")
        # The member's network namespace: the exporter is reached at member:9187 and dials member:5432.
        assert monitored.named(member.name).urn in sidecar.dependencies
        assert sidecar.inputs["networkMode"] == f"container:{member.name}-id"
        assert sidecar.inputs["image"] == image
        assert sidecar.inputs["entrypoints"] == ["prometheus-postgres-exporter"]
        assert "--web.listen-address=0.0.0.0:9187" in sidecar.inputs["command"]
        assert sidecar.inputs["envs"] == [f"{k}={v}" for k, v in exporter_env(plan, member).items()]
        uploads = {u["file"]: u for u in sidecar.inputs["uploads"]["value"]}
        assert uploads["/etc/citus-cluster/exporter/queries.yml"]["content"] == render_queries(plan)
        password = uploads["/etc/citus-cluster/exporter/monitor.password"]
        assert (password["owner"], password["permissions"]) == ("999", "0600")
        assert password["content"] == "generated-monitoringPassword"
    prometheus = monitored.named("citus-prometheus")
    assert prometheus.inputs["ports"] == [{"internal": 9090, "external": 9090, "ip": "127.0.0.1"}]
    assert {f"{m.name}-exporter" for m in plan.members} <= {monitored.by_urn(u).name for u in prometheus.dependencies}
    uploads = {u["file"]: u for u in prometheus.inputs["uploads"]["value"]}
    config = uploads["/etc/citus-cluster/prometheus/prometheus.yml"]["content"]
    assert "ca_file: /etc/citus-cluster/tls/ca.crt" in config and "citus-worker3-1:9187" in config
    assert "password_file: /etc/citus-cluster/prometheus/haproxy-stats.password" in config
    assert "CitusDistNodeOutOfStep" in uploads[f"/etc/citus-cluster/prometheus/{RULES_FILE}"]["content"]
    assert monitored.outputs["prometheus_url"] == "https://127.0.0.1:9090"
    assert "prometheus_url" not in monitored.secret_outputs


def test_monitoring_secrets_stay_secret(monitored: Deployment) -> None:
    """The exporters' password and Prometheus's copy of the stats password travel only as secrets."""
    for registration in monitored.registrations:
        for key, value in registration.inputs.items():
            assert "generated-" not in plain_text(value), f"{registration.name}.{key}"
            assert "PRIVATE KEY" not in plain_text(value), f"{registration.name}.{key}"
    assert is_secret(monitored.named("citus-prometheus").inputs["uploads"])
