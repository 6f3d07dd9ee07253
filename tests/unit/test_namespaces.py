"""The namespaced layout (every member a host of its own) and the network module's commands: pure, no root."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from cluster.config import load_config
from cluster.local import network
from cluster.local.processes import namespace_argv
from cluster.plan import NAMESPACE_RANGE, NamespaceLayout, PortBook, build_plan, ports_needed
from cluster.provision.target import target_from_plan
from cluster.render import etcd_command, render_haproxy, render_patroni


def namespaced(raw: dict | None = None, hosts: PortBook | None = None):  # type: ignore[no-untyped-def]
    config = load_config(raw or {}).config
    ports = PortBook(free=range(40000, 40000 + ports_needed(config)))
    layout = NamespaceLayout("/tmp/h", ports, "/usr/lib/postgresql/15/bin", subnet="198.18.7.0/24", tag="ab12",
                             hosts=hosts or PortBook(free=range(2, 255)))
    return build_plan(config, layout)


def test_every_member_and_etcd_member_gets_its_own_address_and_host() -> None:
    plan = namespaced()
    net = plan.host_network
    assert net is not None and net.subnet == "198.18.7.0/24" and net.gateway == "198.18.7.1"
    names = [m.name for m in plan.members] + [e.name for e in plan.etcd]
    assert [h.name for h in net.hosts] == names
    addresses = [h.address for h in net.hosts]
    assert len(set(addresses)) == len(names) and net.gateway not in addresses
    assert all(IPv4Address(a) in IPv4Network(net.subnet) for a in addresses)
    for m in plan.members:  # every listener binds its host's address; clients reach it there
        assert m.host == m.postgres.host == m.postgres.listen == m.api.host == m.published_host
        assert net.host(m.name).address == m.host
    assert [e.host for e in plan.etcd] == [net.host(e.name).address for e in plan.etcd]
    assert all(len(h.veth) + 1 <= 15 for h in net.hosts)  # the peer end is veth + "p": Linux's 15-char limit
    assert IPv4Network(net.subnet).subnet_of(NAMESPACE_RANGE)


def test_haproxy_stays_on_loopback_and_members_admit_the_bridge() -> None:
    plan = namespaced()
    assert {plan.balancer.read_write.host, plan.balancer.stats.host} == {"127.0.0.1"}
    assert plan.client_host == "127.0.0.1" and plan.allowed_cidr == "198.18.7.0/24"
    haproxy = render_haproxy(plan)
    assert f"server {plan.coordinators[0].name} {plan.coordinators[0].postgres.address}" in haproxy
    patroni = render_patroni(plan, plan.members[0])
    assert "hostssl all all 198.18.7.0/24 scram-sha-256" in patroni  # TLS-only, from the bridge range
    assert all(e.client.address in patroni for e in plan.etcd)
    assert f"--listen-peer-urls=https://{plan.etcd[0].peer.address}" in etcd_command(plan, plan.etcd[0])


def test_provisioning_reaches_members_at_their_own_address() -> None:
    plan = namespaced()
    target = target_from_plan(plan, "su", "app")
    first = plan.members[0]
    assert target.members[0].patroni_url == f"https://{first.host}:{first.api.port}"
    assert f"@{first.host}:{first.postgres.port}/" in target.members[0].dsn
    assert plan.node_summaries()[0]["postgres"] == first.postgres.address


def test_a_member_keeps_its_address_when_the_plan_grows() -> None:
    hosts = PortBook(free=range(2, 255))
    small = namespaced({}, hosts)
    grown = namespaced({"workers": {"groups": 3}}, hosts)
    before = {h.name: h.address for h in small.host_network.hosts}  # type: ignore[union-attr]
    after = {h.name: h.address for h in grown.host_network.hosts}  # type: ignore[union-attr]
    assert all(after[name] == address for name, address in before.items())
    assert len(set(after.values())) == len(after)


def test_create_commands_guard_the_range_before_the_bridge_has_an_address() -> None:
    net = namespaced().host_network
    assert net is not None
    commands = network.create_commands(net)
    text = [" ".join(c) for c in commands]
    guard = text.index(f"ip route replace unreachable {net.guard} metric {network.GUARD_METRIC}")
    assert guard < text.index(f"ip addr add {net.gateway}/24 dev {net.bridge}")
    host = net.hosts[0]
    assert f"ip netns add {host.namespace}" in text
    assert f"ip -n {host.namespace} addr add {host.address}/24 dev eth0" in text
    assert f"ip link set {host.veth} master {net.bridge} up" in text
    again = network.create_commands(net, existing={net.bridge, *(h.namespace for h in net.hosts[:-1])})
    assert not any(net.bridge in c and "type" in c for c in again)  # the bridge is not made twice
    assert [c for c in again if c[:3] == ["ip", "netns", "add"]] == [["ip", "netns", "add", net.hosts[-1].namespace]]


def test_cut_scripts_drop_both_ways_selectively_or_entirely_and_heal_is_idempotent() -> None:
    some = network.cut_script(["198.18.7.9", "198.18.7.3", "198.18.7.3"])
    assert "ip saddr { 198.18.7.3, 198.18.7.9 } drop" in some
    assert "ip daddr { 198.18.7.3, 198.18.7.9 } drop" in some
    everything = network.cut_script(None)
    assert 'iifname "eth0" drop' in everything and 'oifname "eth0" drop' in everything
    for script in (some, everything, network.heal_script()):  # declare, then delete: never fails if absent
        assert script.startswith(f"table inet {network.NFT_TABLE}\ndelete table inet {network.NFT_TABLE}\n")
    with pytest.raises(network.NetworkError, match="at least one peer"):
        network.cut_script([])


def test_free_subnet_skips_the_ones_in_use() -> None:
    used = "unreachable 198.18.0.0/24 metric 4242\n198.18.1.0/24 dev ccab12br proto kernel\n198.18.10.0/24 x"
    assert network.free_subnet(used) == "198.18.2.0/24"


def test_namespace_argv_execs_in_place_as_the_server_user() -> None:
    argv = namespace_argv("ccab12-h-etcd-0", 101, 104, ["etcd", "--name=x"])
    assert argv[:4] == ["ip", "netns", "exec", "ccab12-h-etcd-0"]
    assert argv[4:8] == ["setpriv", "--reuid=101", "--regid=104", "--clear-groups"]
    assert argv[-2:] == ["etcd", "--name=x"]
