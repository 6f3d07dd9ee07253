"""Certificates follow the plan: every name a process is reached by is in its certificate, the chain verifies
(by an independent verifier, cryptography's RFC 5280 one), re-runs keep what did not change, and the rendered
files wire each link to the right file."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dill
import pytest
import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from cluster import tls
from cluster.config import load_config
from cluster.plan import Endpoint, LocalLayout, PortBook, build_plan
from cluster.provision.certificates import CertificatesProvider, identity_props
from cluster.render import etcd_command, render_haproxy, render_patroni

AUTHORITY = tls.new_authority("test")  # one per module: key generation is the slow part


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def verify(authority: tls.Authority, leaf_pem: str, host: str) -> None:
    name = x509.IPAddress(ipaddress.ip_address(host)) if host[0].isdigit() else x509.DNSName(host)
    verifier = PolicyBuilder().store(Store([cert(authority.cert)])).build_server_verifier(name)
    verifier.verify(cert(leaf_pem), [])


def test_every_process_is_named_by_each_host_it_is_reached_by() -> None:
    plan = build_plan(load_config({"ports": {"anyNode": 5434}}).config)
    found = {i.name: i for i in tls.identities(plan)}
    assert set(found) == {m.name for m in plan.members} | {e.name for e in plan.etcd} | {plan.balancer.name}
    for m in plan.members:
        assert set(found[m.name].hosts) == {m.name, m.postgres.host, m.api.host, "127.0.0.1", "localhost"}
        assert found[m.name].tls_dir == m.tls_dir
    for e in plan.etcd:
        assert {e.client.host, e.peer.host, plan.client_host} <= set(found[e.name].hosts)


def test_a_remote_docker_host_is_in_every_certificate() -> None:
    raw = {"dockerHost": "ssh://ops@db.example.org", "ports": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}
    plan = build_plan(load_config(raw).config)
    assert plan.client_host == "db.example.org"
    assert all("db.example.org" in i.hosts for i in tls.identities(plan))


@dataclass(frozen=True)
class OwnAddressLayout(LocalLayout):
    """Each member on its own address (what a namespaced layout does): the SANs must follow."""

    def endpoint(self, name: str, role: str) -> Endpoint:
        octet = 10 + sum(map(ord, name)) % 200
        return Endpoint(host=f"10.99.0.{octet}", port=self.ports.port(name, role), listen=f"10.99.0.{octet}")


def test_sans_follow_a_layout_that_gives_members_their_own_addresses() -> None:
    layout = OwnAddressLayout("/tmp/x", PortBook(free=range(42000, 42100)), "/usr/lib/postgresql/15/bin")
    plan = build_plan(load_config({}).config, layout)
    identities = {i.name: i for i in tls.identities(plan)}
    member = plan.members[3]
    assert member.postgres.host.startswith("10.99.0.") and member.postgres.host in identities[member.name].hosts
    issued = tls.issue(AUTHORITY, identities[member.name])
    verify(AUTHORITY, issued.cert, member.postgres.host)
    assert tls.cert_hosts(issued.cert) == identities[member.name].hosts


def test_chain_verifies_for_every_name_and_only_for_them() -> None:
    plan = build_plan(load_config({}).config)
    identity = next(i for i in tls.identities(plan) if i.name == plan.members[0].name)
    issued = tls.issue(AUTHORITY, identity)
    for host in identity.hosts:
        verify(AUTHORITY, issued.cert, host)
    with pytest.raises(VerificationError):
        verify(AUTHORITY, issued.cert, plan.members[1].name)  # another member's name
    with pytest.raises(VerificationError):
        verify(tls.new_authority("other"), issued.cert, identity.name)  # another cluster's CA
    usages = cert(issued.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}  # server + client


def test_files_keep_keys_secret_and_haproxy_gets_cert_and_key_in_one() -> None:
    plan = build_plan(load_config({}).config)
    identity = next(i for i in tls.identities(plan) if i.name == plan.balancer.name)
    issued = tls.issue(AUTHORITY, identity)
    files = tls.files_for(identity, AUTHORITY.cert, issued)
    assert {path for path, (_, secret) in files.items() if secret} == {identity.paths.key, identity.paths.pem}
    assert files[identity.paths.pem][0] == issued.cert + issued.key
    assert "PRIVATE KEY" not in files[identity.paths.cert][0] + files[identity.paths.ca][0]


def test_reconcile_keeps_unchanged_certificates_and_reissues_changed_ones() -> None:
    plan = build_plan(load_config({}).config)
    wanted = tls.identities(plan)
    first = tls.reconcile(AUTHORITY, wanted)
    assert tls.reconcile(AUTHORITY, wanted, first) == first
    grown = tls.identities(build_plan(load_config({"workers": {"groups": 4}}).config))
    second = tls.reconcile(AUTHORITY, grown, first)
    assert {n: second[n] for n in first} == first and len(second) == len(first) + 2
    moved = tls.identities(build_plan(load_config({"ports": {"bindAddress": "192.0.2.7",
                                                                "allowPublicBind": True}}).config))
    third = tls.reconcile(AUTHORITY, moved, first)
    assert all(third[n].cert != first[n].cert and "192.0.2.7" in third[n].hosts for n in first)


def test_the_certificates_resource_keeps_its_ca_across_updates() -> None:
    provider = dill.loads(dill.dumps(CertificatesProvider(), recurse=True))  # Pulumi pickles it
    small = {"scope": "citus", "identities": identity_props(tls.identities(build_plan(load_config({}).config)))}
    grown_plan = build_plan(load_config({"workers": {"groups": 4}}).config)
    grown = {"scope": "citus", "identities": identity_props(tls.identities(grown_plan))}
    created = provider.create(small).outs
    assert not provider.diff("id", created, small).changes
    assert provider.diff("id", created, grown).changes and provider.diff("id", created, grown).replaces == []
    updated = provider.update("id", created, grown).outs
    assert (updated["ca_cert"], updated["ca_key"]) == (created["ca_cert"], created["ca_key"])
    assert {n: updated["leaves"][n] for n in created["leaves"]} == created["leaves"]
    assert provider.diff("id", created, {**small, "scope": "other"}).replaces == ["scope"]


def test_rendered_files_put_every_link_on_verified_tls() -> None:
    plan = build_plan(load_config({}).config)
    member = plan.groups[1][1]
    paths = tls.TlsPaths(member.tls_dir)
    doc = yaml.safe_load(render_patroni(plan, member))
    assert doc["restapi"] | {"certfile": paths.cert, "keyfile": paths.key, "cafile": paths.ca} == doc["restapi"]
    assert doc["ctl"] == {"insecure": False, "cacert": paths.ca, "certfile": paths.cert, "keyfile": paths.key}
    assert doc["etcd3"]["protocol"] == "https" and doc["etcd3"]["cert"] == paths.cert
    for role in ("superuser", "replication"):
        assert doc["postgresql"]["authentication"][role] | {"sslmode": "verify-full", "sslrootcert": paths.ca} \
            == doc["postgresql"]["authentication"][role]
    params = doc["postgresql"]["parameters"]
    assert params["ssl"] == "on" and params["ssl_key_file"] == paths.key
    # verified like every other link, and with issue 13's timeouts: a peer cut off must not hang a statement
    assert params["citus.node_conninfo"] == f"sslmode=verify-full sslrootcert={paths.ca} tcp_user_timeout=5000"

    etcd = etcd_command(plan, plan.etcd[0])
    assert "--client-cert-auth" in etcd and "--peer-client-cert-auth" in etcd
    assert not [a for a in etcd if "http://" in a]

    haproxy = render_haproxy(plan)
    ca = tls.TlsPaths(plan.balancer.tls_dir).ca
    assert f"check-ssl verify required ca-file {ca}" in haproxy
    servers = [line for line in haproxy.splitlines() if line.strip().startswith("server ")]
    assert servers and all(line.split()[-2:] == ["verifyhost", line.split()[1]] for line in servers)
    assert f"bind 0.0.0.0:7000 ssl crt {tls.TlsPaths(plan.balancer.tls_dir).pem}" in haproxy


def test_user_parameters_cannot_turn_tls_off() -> None:
    plan = build_plan(load_config({"postgresql": {"parameters": {"work_mem": "8MB"}}}).config)
    params = yaml.safe_load(render_patroni(plan, plan.members[0]))["postgresql"]["parameters"]
    assert params["ssl"] == "on" and params["work_mem"] == "8MB"


def test_the_harness_measurement_switch_only_relaxes_what_dials_the_servers() -> None:
    from cluster.local.certs import plaintext_dsn, without_tls

    plan = build_plan(load_config({}).config)
    doc = yaml.safe_load(render_patroni(plan, plan.members[0]))
    without_tls(doc)
    hba = doc["postgresql"]["pg_hba"]
    assert not [r for r in hba if "hostnossl" in r or "hostssl" in r] and [r for r in hba if r.startswith("host ")]
    assert doc["postgresql"]["parameters"]["ssl"] == "on"  # the server still offers TLS
    assert doc["postgresql"]["parameters"]["citus.node_conninfo"] == "sslmode=disable"
    assert plaintext_dsn(plan.dsn("read-write", "pw")).endswith(f"sslmode=disable&sslrootcert={plan.client_ca_file}")


def test_service_file_names_every_exported_endpoint_and_keeps_passwords_in_the_passfile() -> None:
    from cluster.render.client import render_passfile, render_service_file

    plan = build_plan(load_config({"ports": {"anyNode": 5434}}).config)
    text = render_service_file(plan, "/x/ca.crt", "/x/pgpass")
    assert [line for line in text.splitlines() if line.startswith("[")] == [
        "[citus-admin]", "[citus-app]", "[citus-app-ro]", "[citus-app-any-node]"]
    assert text.count("sslmode=verify-full") == 4 and text.count("sslrootcert=/x/ca.crt") == 4
    passfile = render_passfile(plan, {"superuser": "a:b\\c", "app": "app-pw"})
    assert "a\\:b\\\\c" in passfile and "password" not in text.lower().replace("passfile", "")
    assert "127.0.0.1:5432:citus:app:app-pw" in passfile.splitlines()
