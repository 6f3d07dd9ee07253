"""Every rendered artifact checked by the program that will run it: HAProxy, Patroni, the render CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cluster import tls
from cluster.config import load_config
from cluster.plan import PROMETHEUS_CONFIG_DIR, DockerLayout, Plan, build_plan
from cluster.render import exporter, prometheus, render_haproxy, render_patroni, render_patroni_secrets
from cluster.render.haproxy import render_haproxy_secrets
from cluster.secrets import Passwords
from tests.support.patroni_check import validate_patroni_dir

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "dev": {},
    "large": {
        "coordinator": {"members": 3},
        "workers": {"groups": 4, "members": 3},
        "etcd": {"members": 5},
        "ports": {"anyNode": 5434},
    },
    "single": {"coordinator": {"members": 1}, "workers": {"groups": 1, "members": 1}, "etcd": {"members": 1}},
    "pg15": {"versions": {"postgres": 15, "postgis": "3.3"}},
}
haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"


@dataclass(frozen=True)
class CheckLayout(DockerLayout):
    """The Docker layout with the TLS files under a directory of this machine, so the programs that check the
    rendered files can open the certificates those files name (everything else stays the containers')."""

    tls_root: str = ""

    def tls_dir(self, name: str) -> str:
        return f"{self.tls_root}/{name}"


def docker_plan_with_certificates(raw: dict, root: Path) -> Plan:
    """The Docker plan of `raw`, with real certificates (cluster/tls.py) written where it says they are."""
    plan = build_plan(load_config(raw).config, CheckLayout(tls_root=str(root)))
    authority = tls.new_authority(plan.scope)
    for identity in tls.identities(plan):
        for path, (text, _) in tls.files_for(identity, authority.cert, tls.issue(authority, identity)).items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return plan
# Every character HAProxy's config syntax treats specially (quotes, escapes, $VAR expansion, comments, spaces).
STATS_PASSWORD = """it's a "$HOME" \\ # pass word"""
needs_haproxy = pytest.mark.skipif(not os.path.exists(haproxy), reason="haproxy is not installed (.ci/run installs it)")


@needs_haproxy
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_haproxy_accepts_rendered_config(name: str, tmp_path: Path) -> None:
    cfg, secrets = tmp_path / "haproxy.cfg", tmp_path / "stats-users.cfg"
    cfg.write_text(render_haproxy(docker_plan_with_certificates(CONFIGS[name], tmp_path / "tls")))
    secrets.write_text(render_haproxy_secrets(STATS_PASSWORD))
    result = subprocess.run([haproxy, "-c", "-f", str(cfg), "-f", str(secrets)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The only warnings allowed are about container names that resolve on the Docker network alone.
    warnings = [line for line in result.stderr.splitlines() if "[WARNING]" in line]
    assert all("could not resolve address" in w for w in warnings), warnings


# One per secret the stack has, by name: a secret added later needs no edit here.
PASSWORDS = Passwords(**{name: f"{name}-pw" for name in Passwords.names()})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_patroni_validator_accepts_every_member(name: str, tmp_path: Path) -> None:
    plan = docker_plan_with_certificates(CONFIGS[name], tmp_path / "tls")
    cluster_hosts = {m.name for m in plan.members} | {e.name for e in plan.etcd}
    for member in plan.members:
        directory = tmp_path / member.name
        directory.mkdir()
        (directory / "10-patroni.yml").write_text(render_patroni(plan, member))
        (directory / "90-secrets.yml").write_text(render_patroni_secrets(PASSWORDS))
        assert validate_patroni_dir(directory, cluster_hosts, image_bin_dir=plan.bin_dir) == [], member.name


pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
needs_pgbouncer = pytest.mark.skipif(not os.path.exists(pgbouncer),
                                     reason="pgbouncer is not installed (.ci/run installs it)")


@dataclass(frozen=True)
class PoolerCheckLayout(CheckLayout):
    """CheckLayout with PgBouncer's files beside the certificates, where this machine's pgbouncer reads them."""

    def pooler_dir(self, name: str) -> str:
        return f"{self.tls_root}/{name}/pgbouncer"


@needs_pgbouncer
@pytest.mark.parametrize("name", ["dev", "large"])
def test_pgbouncer_runs_the_rendered_ini(name: str) -> None:
    """pgbouncer has no check-only switch: start it on every coordinator's rendered file (only its port moved to a
    free one and its address to loopback), and require it to come up listening with no warning or error, to
    refuse a client without TLS, and to speak TLS with the member's certificate."""
    import socket
    import tempfile
    import time

    import psycopg

    from cluster.local.processes import give_to_server_user, raise_open_files, server_user
    from cluster.provision.scram import pooled_verifier
    from cluster.render import render_pgbouncer, render_pgbouncer_auth

    raise_open_files()  # or PgBouncer warns that max_client_conn exceeds the file limit it inherits

    root = Path(tempfile.mkdtemp(prefix="pgbouncer-check-"))  # /tmp: the server user can traverse it
    try:
        os.chmod(root, 0o755)
        plan = build_plan(load_config(CONFIGS[name]).config, PoolerCheckLayout(tls_root=str(root)))
        authority = tls.new_authority(plan.scope)
        for identity in tls.identities(plan):
            for path, (text, _) in tls.files_for(identity, authority.cert, tls.issue(authority, identity)).items():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)
        for member in plan.coordinators:
            assert member.pooler is not None
            Path(member.pooler.config_dir).mkdir(parents=True)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            text = render_pgbouncer(plan, member)
            text = text.replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
            text = text.replace("listen_port = 6432", f"listen_port = {port}")
            Path(member.pooler.config_path).write_text(text)
            verifier = pooled_verifier("y" * 24, "postgres", "x" * 24)
            Path(member.pooler.auth_file).write_text(render_pgbouncer_auth("x" * 24, verifier))
            os.chmod(member.pooler.auth_file, 0o600)
            give_to_server_user(root)
            user = server_user()
            argv = [pgbouncer, member.pooler.config_path]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    **({"user": user.pw_uid, "group": user.pw_gid} if user else {}))
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and proc.poll() is None:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                assert proc.poll() is None, proc.communicate()[0]
                with pytest.raises(psycopg.OperationalError, match="SSL required"):
                    psycopg.connect(f"host=127.0.0.1 port={port} user=app dbname=citus sslmode=disable",
                                    connect_timeout=3)
                # TLS verified against the stack CA and a name of the member's certificate; the login itself then
                # fails (no PostgreSQL behind this PgBouncer), after the handshake.
                ca = tls.TlsPaths(member.tls_dir).ca
                with pytest.raises(psycopg.OperationalError) as refused:
                    psycopg.connect(f"host=127.0.0.1 port={port} user=app password=x dbname=citus "
                                    f"sslmode=verify-full sslrootcert={ca}", connect_timeout=5)
                assert "certificate" not in str(refused.value).lower(), refused.value
            finally:
                proc.terminate()
                log = proc.communicate(timeout=10)[0]
            problems = [line for line in log.splitlines() if any(w in line for w in ("WARNING", "ERROR", "FATAL"))
                        and "server login" not in line and "pooler error" not in line
                        and "client_tls" not in line and "closing because" not in line
                        and "DNS lookup failed" not in line]  # container names resolve on the Docker network only
            assert "listening on 127.0.0.1" in log, log
            assert problems == [], log
    finally:
        shutil.rmtree(root, ignore_errors=True)


needs_pgbouncer_exporter = pytest.mark.skipif(
    shutil.which("prometheus-pgbouncer-exporter") is None,
    reason="prometheus-pgbouncer-exporter is not installed (.ci/run installs it)")


@needs_pgbouncer
@needs_pgbouncer_exporter
def test_pgbouncer_exporter_runs_on_the_rendered_files() -> None:
    """The PgBouncer exporter of a coordinator member (Docker plan, monitoring.enabled) on its rendered config,
    launcher and environment, against PgBouncer on the member's rendered ini (only addresses and ports moved to
    free loopback ones, the Docker directory to a local one): it logs in to the admin console as the monitoring
    role over verified TLS with the password from its pgpass file only, serves PgBouncer's metrics over HTTPS with
    the member's certificate and refuses plain HTTP. No PostgreSQL is needed: the admin console is PgBouncer's."""
    import http.client
    import socket
    import tempfile
    import time
    import urllib.request

    from cluster.local.processes import give_to_server_user, raise_open_files, server_user
    from cluster.provision.rest import tls_context
    from cluster.provision.scram import pooled_verifier
    from cluster.render import pgbouncer_exporter as pe
    from cluster.render import render_pgbouncer, render_pgbouncer_auth
    from tests.support.prometheus import parse_metrics

    raise_open_files()

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        user = server_user()
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={"PATH": os.environ["PATH"], **(env or {})},
                                **({"user": user.pw_uid, "group": user.pw_gid} if user else {}))

    root = Path(tempfile.mkdtemp(prefix="pgbouncer-exporter-check-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        os.chmod(root, 0o755)
        plan = build_plan(load_config({"monitoring": {"enabled": True}}).config,
                          PoolerCheckLayout(tls_root=str(root)))
        authority = tls.new_authority(plan.scope)
        for identity in tls.identities(plan):
            for path, (text, _) in tls.files_for(identity, authority.cert, tls.issue(authority, identity)).items():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)
        member = plan.coordinators[0]
        assert member.pooler is not None
        pool_port, metrics_port = free_port(), free_port()
        Path(member.pooler.config_dir).mkdir(parents=True)
        ini = render_pgbouncer(plan, member).replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        Path(member.pooler.config_path).write_text(ini.replace("listen_port = 6432", f"listen_port = {pool_port}"))
        pooler_pw, monitoring_pw = "x" * 24, "m:o\\n" * 6  # pgpass escaping exercised
        Path(member.pooler.auth_file).write_text(render_pgbouncer_auth(
            pooler_pw, pooled_verifier("y" * 24, "postgres", pooler_pw),
            pooled_verifier(monitoring_pw, "monitor", pooler_pw)))
        directory = root / "pgbouncer-exporter"
        directory.mkdir()
        config = pe.render_config(plan, member)
        config = config.replace("host = 0.0.0.0", "host = 127.0.0.1").replace("port = 9127", f"port = {metrics_port}")
        config = config.replace(f"pgbouncer-host = {member.pooler.endpoint.host}", "pgbouncer-host = 127.0.0.1")
        config = config.replace("pgbouncer-port = 6432", f"pgbouncer-port = {pool_port}")
        for name, text in pe.render_pgbouncer_exporter_files(plan, member).items():
            (directory / name).write_text(config if name == pe.CONFIG_FILE else text)
        (directory / pe.PGPASS_FILE).write_text(pe.render_pgpass(monitoring_pw))
        for secret in (member.pooler.auth_file, directory / pe.PGPASS_FILE):
            os.chmod(secret, 0o600)
        give_to_server_user(root)
        local = {pe.DOCKER_DIR: str(directory)}

        def moved(text: str) -> str:
            for old, new in local.items():
                text = text.replace(old, new)
            return text

        procs.append(start([pgbouncer, member.pooler.config_path]))
        env = {k: moved(v) for k, v in pe.pgbouncer_exporter_env(plan, member).items()}
        assert monitoring_pw not in json.dumps(env) and monitoring_pw not in config
        procs.append(start([moved(a) for a in pe.pgbouncer_exporter_command(plan, member)], env))
        ca = tls.TlsPaths(member.tls_dir).ca
        url = f"https://127.0.0.1:{metrics_port}/metrics"
        deadline, samples, last = time.monotonic() + 20, [], None
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            try:
                with urllib.request.urlopen(url, timeout=5, context=tls_context(ca)) as response:
                    samples = parse_metrics(response.read().decode())
                break
            except OSError as exc:
                last = exc
                time.sleep(0.3)
        assert samples, (last, [p.poll() for p in procs])
        found = {name: value for name, labels, value in samples
                 if name.startswith("pgbouncer_") and labels.get("database") in (None, "pgbouncer")}
        assert found["pgbouncer_used_clients"] >= 1, found  # the exporter's own admin-console session
        assert found["pgbouncer_pool_size"] >= 1 and "pgbouncer_pool_max_wait_seconds" in found, found
        assert "pgbouncer_queries_total" in found and "pgbouncer_active_clients" in found, found
        with pytest.raises((OSError, http.client.HTTPException)):  # HTTPS only: the handshake fails
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    finally:
        logs = []
        for proc in procs:
            proc.terminate()
            logs.append(proc.communicate(timeout=10)[0])
        shutil.rmtree(root, ignore_errors=True)
    text = "\n".join(logs)
    assert monitoring_pw not in text and "Traceback" not in text, text
    assert "scrape failed" not in text, text


def test_patroni_validator_catches_a_broken_file(tmp_path: Path) -> None:
    """The check is not a rubber stamp: a wrong type and an unknown etcd host are reported."""
    plan = build_plan(load_config({}).config)
    doc = yaml.safe_load(render_patroni(plan, plan.members[0]))
    doc["bootstrap"]["dcs"]["ttl"] = "soon"
    doc["etcd3"]["hosts"].append("nowhere-etcd:2379")
    (tmp_path / "10-patroni.yml").write_text(yaml.safe_dump(doc))
    errors = validate_patroni_dir(
        tmp_path, {m.name for m in plan.members} | {e.name for e in plan.etcd}, image_bin_dir=plan.bin_dir
    )
    assert any("ttl" in e for e in errors) and any("nowhere-etcd" in e for e in errors), errors


def render_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cluster", "render", *args], cwd=ROOT, capture_output=True, text=True)


def test_render_cli_on_the_dev_stack(tmp_path: Path) -> None:
    result = render_cli("--stack", "dev", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [g["group"] for g in plan["groups"]] == [0, 1, 2, 3]
    ca = build_plan(load_config({}).config).client_ca_file
    assert plan["outputs"]["admin_dsn"] == (
        f"postgresql://postgres:REDACTED@127.0.0.1:5432/citus?sslmode=verify-full&sslrootcert={ca}"
    )
    assert (tmp_path / "Dockerfile").read_text().startswith("# Rendered by citus-cluster")
    assert len(list(tmp_path.glob("patroni/*/10-patroni.yml"))) == 8
    assert not list(tmp_path.rglob("90-secrets.yml")), "render must never write credentials"


def test_render_cli_rejects_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "citus-cluster:workers": {"groups": 0},
                    "citus-cluster:superuserPassword": "plain",
                    "citus-cluster:colour": "blue",
                }
            }
        )
    )
    result = render_cli("--config", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    for key in ("workers.groups", "superuserPassword", "colour"):
        assert key in result.stderr
    assert not (tmp_path / "out").exists()


def test_make_up_without_pulumi_or_docker_names_what_is_missing(tmp_path: Path) -> None:
    fake_docker = tmp_path / "docker"
    fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake_docker.chmod(0o755)
    path = f"{tmp_path}:/usr/bin:/bin"  # no pulumi anywhere on it
    result = subprocess.run(
        ["make", "-s", "up"], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": path}
    )
    assert result.returncode != 0
    assert "Pulumi CLI" in result.stderr and "running Docker daemon" in result.stderr, result.stderr
    assert "pulumi up" not in result.stdout


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (.ci/run installs it)")


@needs_promtool
def test_prometheus_container_files_pass_promtool(tmp_path: Path) -> None:
    """What the Prometheus container gets (monitoring.enabled): scrape config, rules and HTTPS web config, with
    its real certificate files where the layout says and the config directory moved here."""
    plan = docker_plan_with_certificates({"monitoring": {"enabled": True}}, tmp_path / "tls")
    config_dir = tmp_path / "prometheus"
    config_dir.mkdir()
    for name, text in prometheus.container_files(plan).items():
        (config_dir / name).write_text(text.replace(PROMETHEUS_CONFIG_DIR, str(config_dir)))
    (config_dir / prometheus.STATS_PASSWORD_FILE).write_text("x")
    for args in (["check", "config", prometheus.SCRAPE_FILE], ["check", "rules", prometheus.RULES_FILE],
                 ["check", "web-config", prometheus.WEB_FILE]):
        done = subprocess.run(["promtool", *args], cwd=config_dir, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_exporter_web_config_passes_promtool(tmp_path: Path) -> None:
    """The exporters' web config is the exporter toolkit's format, which promtool checks (certificate and key)."""
    plan = docker_plan_with_certificates({"monitoring": {"enabled": True}}, tmp_path / "tls")
    for member in plan.members[:2]:
        (tmp_path / "web.yml").write_text(exporter.render_web_config(member))
        done = subprocess.run(["promtool", "check", "web-config", "web.yml"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
