"""TLS on every link of a running cluster (real processes): what connects verified, and what is refused.

Links: client -> HAProxy -> PostgreSQL (TLS end to end, HAProxy in TCP mode), client -> member, coordinator ->
worker (Citus, `citus.node_conninfo`), replica -> primary (walsender), Patroni and HAProxy -> Patroni REST
(HTTPS, verified), Patroni -> etcd and etcd <-> etcd (TLS with client certificates), HAProxy stats (HTTPS).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from cluster import tls
from cluster.local.harness import Harness
from cluster.plan import RESTAPI_USER, STATS_USER
from cluster.provision.rest import rest_json

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(harness: Harness) -> Harness:
    """The shared provisioned cluster (the app role exists for app_dsn), kept clean by conftest's fixture."""
    return harness


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("other-ca") / "ca.crt"
    path.write_text(tls.new_authority("someone-else").cert)
    return str(path)


def exported(cluster: Harness) -> dict[str, str]:
    """Every DSN the cluster exports (the stack's outputs), with the password of its credential."""
    plan = cluster.plan
    return {
        o.name: plan.dsn(o.listener, getattr(cluster.passwords, o.credential), plan.user(o.credential))
        for o in plan.dsn_outputs()
    }


def tls_of_session(dsn: str, **overrides: str) -> tuple[bool, str]:
    with psycopg.connect(dsn, connect_timeout=5, **overrides) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None
        return row


@pytest.mark.citus
def test_every_exported_endpoint_and_every_member_connects_verified(cluster: Harness) -> None:
    dsns = exported(cluster)
    assert set(dsns) == {"admin_dsn", "app_dsn", "app_ro_dsn", "app_any_node_dsn"}
    for name, dsn in dsns.items():
        assert "sslmode=verify-full" in dsn and f"sslrootcert={cluster.ca_file}" in dsn, name
        ssl_on, version = tls_of_session(dsn)
        assert ssl_on and version in ("TLSv1.2", "TLSv1.3"), name
    for member in cluster.target.members:
        assert tls_of_session(member.dsn)[0], member.name


@pytest.mark.parametrize("endpoint", ["admin_dsn", "member"])
def test_plaintext_wrong_ca_and_wrong_host_name_are_refused(cluster: Harness, other_ca: str, endpoint: str) -> None:
    dsn = exported(cluster)["admin_dsn"] if endpoint == "admin_dsn" else cluster.target.members[0].dsn
    # PostgreSQL's pg_hba (hostnossl ... reject) says "no encryption"; the admin DSN reaches the leader's PgBouncer
    # with pooling on, whose client_tls_sslmode = require says "SSL required".
    with pytest.raises(psycopg.OperationalError, match="no encryption|SSL required"):
        psycopg.connect(dsn, sslmode="disable", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn, sslrootcert=other_ca, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(dsn, host="not-this-cluster.example", hostaddr="127.0.0.1", connect_timeout=5)
    assert tls_of_session(dsn, host="localhost")[0]  # a name the certificate does hold: accepted


@pytest.mark.citus
def test_coordinator_to_worker_and_replication_connections_use_tls(cluster: Harness) -> None:
    with psycopg.connect(exported(cluster)["admin_dsn"], autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM vehicle_locations")  # Citus opens (and caches) worker connections
        for group in range(1, len(cluster.plan.groups)):
            leader = cluster.member(cluster.leader(group))
            with psycopg.connect(cluster.plan.member_dsn(leader, cluster.passwords.superuser)) as worker:
                citus = worker.execute(
                    "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                    " WHERE a.application_name LIKE 'citus_internal%' AND a.pid <> pg_backend_pid()"
                ).fetchall()
                assert citus and all(ssl_on for ssl_on, _ in citus), (leader.name, citus)
    for group in range(len(cluster.plan.groups)):
        leader = cluster.member(cluster.leader(group))
        with psycopg.connect(cluster.plan.member_dsn(leader, cluster.passwords.superuser)) as primary:
            walsenders = primary.execute(
                "SELECT r.application_name, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
            ).fetchall()
        assert len(walsenders) == len(cluster.plan.groups[group]) - 1, walsenders
        assert all(ssl_on for _, ssl_on in walsenders), (leader.name, walsenders)


def test_etcd_refuses_a_client_without_a_certificate_of_the_cluster_ca(cluster: Harness) -> None:
    member = cluster.plan.etcd[0]
    paths = tls.TlsPaths(member.tls_dir)
    url = f"https://{member.client.address}/health"
    assert rest_json(url, ca_file=cluster.ca_file, client_cert=(paths.cert, paths.key))["health"] == "true"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        rest_json(url, ca_file=cluster.ca_file)  # no client certificate
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        rest_json(f"http://{member.client.address}/health")  # no TLS at all
    keys = f"https://{member.client.address}/v3/kv/range"
    body = json.dumps({"key": base64.b64encode(b"/service/").decode()}).encode()
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(keys, data=body), timeout=5,
                               context=ssl.create_default_context(cafile=cluster.ca_file))


def _post(url: str, ca_file: str | None, credentials: tuple[str, str] | None) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_patroni_unsafe_endpoints_need_credentials_and_https(cluster: Harness, other_ca: str) -> None:
    """POST /reload is unsafe (it changes what the member runs with) yet harmless to repeat: the probe here."""
    member = cluster.plan.members[0]
    url = f"{cluster.patroni_url(member.name)}/reload"
    assert _post(url, cluster.ca_file, None) == 401
    assert _post(url, cluster.ca_file, (RESTAPI_USER, "wrong-password")) == 401
    assert _post(url, cluster.ca_file, ("admin", cluster.passwords.rest_api)) == 401
    assert _post(url, cluster.ca_file, (RESTAPI_USER, cluster.passwords.rest_api)) == 202
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        _post(url.replace("https://", "http://"), None, (RESTAPI_USER, cluster.passwords.rest_api))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _post(url, other_ca, (RESTAPI_USER, cluster.passwords.rest_api))  # an impostor cannot harvest the password


def test_haproxy_checks_pass_verified_tls_and_its_stats_page_is_https_only(cluster: Harness) -> None:
    """The leader is UP by an HTTP answer (L7OK), so the check's TLS handshake (CA, member name) succeeded."""
    request = urllib.request.Request(cluster.plan.stats_url + ";csv")
    token = base64.b64encode(f"{STATS_USER}:{cluster.passwords.stats}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=cluster.ca_file)
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        rows = response.read().decode().lstrip("# ").splitlines()
    header = rows[0].split(",")
    stats = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:]]
    leader = cluster.leader(0)
    primary = next(r for r in stats if r["pxname"] == "coordinator_primary" and r["svname"] == leader)
    def check(row: dict[str, str]) -> str:
        return row["check_status"].lstrip("* ")  # "* " marks a check in progress

    assert (primary["status"], check(primary)) == ("UP", "L7OK"), primary
    others = [r for r in stats if r["pxname"] == "coordinator_primary" and r["svname"] not in (leader, "BACKEND")]
    assert others and all(check(r) == "L7STS" for r in others), others  # 503 = a replica; its TLS was fine
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(cluster.plan.stats_url.replace("https://", "http://"), timeout=5)


def test_ca_command_writes_the_ca_and_a_service_file_psql_connects_with(cluster: Harness, tmp_path: Path) -> None:
    """No password or DSN on any command line: libpq reads the service and the 0600 password file."""
    done = subprocess.run(
        [sys.executable, "-m", "cluster", "ca", "--harness", str(cluster.base_dir), "--out", str(tmp_path / "ca.crt"),
         "--service-file", str(tmp_path / "pg_service.conf")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ca.crt").read_text() == Path(cluster.ca_file).read_text()
    assert (tmp_path / "pgpass").stat().st_mode & 0o777 == 0o600
    assert cluster.passwords.superuser not in (tmp_path / "pg_service.conf").read_text()
    psql = str(Path(cluster.plan.bin_dir) / "psql")
    query = subprocess.run(
        [psql, "service=h-admin", "-XAtc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        capture_output=True, text=True, timeout=30,
        env={"PGSERVICEFILE": str(tmp_path / "pg_service.conf"), "PATH": "/usr/bin:/bin"},
    )
    assert query.returncode == 0 and query.stdout.strip() == "t", query.stderr
