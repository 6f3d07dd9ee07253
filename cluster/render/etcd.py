"""etcd's command line per member; the container and the harness run the same argv.

Client and peer traffic are TLS both ways: etcd serves with the member's certificate and admits only clients
(Patroni, its peers, the health check) that present a certificate of the cluster CA.
"""

from __future__ import annotations

from cluster.plan import EtcdMember, Plan
from cluster.tls import TlsPaths


def etcd_command(plan: Plan, member: EtcdMember, binary: str = "etcd") -> list[str]:
    cluster = ",".join(f"{e.name}=https://{e.peer.address}" for e in plan.etcd)
    tls = TlsPaths(member.tls_dir)
    return [
        binary,
        f"--name={member.name}",
        f"--data-dir={member.data_dir}",
        f"--listen-client-urls=https://{member.client.bind}",
        f"--advertise-client-urls=https://{member.client.address}",
        f"--listen-peer-urls=https://{member.peer.bind}",
        f"--initial-advertise-peer-urls=https://{member.peer.address}",
        f"--initial-cluster={cluster}",
        f"--initial-cluster-token={plan.scope}-etcd",
        "--initial-cluster-state=new",
        "--auto-compaction-retention=1",
        f"--cert-file={tls.cert}",
        f"--key-file={tls.key}",
        f"--trusted-ca-file={tls.ca}",
        "--client-cert-auth",
        f"--peer-cert-file={tls.cert}",
        f"--peer-key-file={tls.key}",
        f"--peer-trusted-ca-file={tls.ca}",
        "--peer-client-cert-auth",
    ]


def etcd_client_flags(member: EtcdMember) -> list[str]:
    """etcdctl's flags to reach `member` as an authenticated client (the container's health check)."""
    tls = TlsPaths(member.tls_dir)
    return [
        f"--endpoints=https://127.0.0.1:{member.client.port}",
        f"--cacert={tls.ca}",
        f"--cert={tls.cert}",
        f"--key={tls.key}",
    ]
