"""etcd's command line per member; the container and the harness run the same argv."""

from __future__ import annotations

from cluster.plan import EtcdMember, Plan


def etcd_command(plan: Plan, member: EtcdMember, binary: str = "etcd") -> list[str]:
    cluster = ",".join(f"{e.name}=http://{e.peer.address}" for e in plan.etcd)
    return [
        binary,
        f"--name={member.name}",
        f"--data-dir={member.data_dir}",
        f"--listen-client-urls=http://{member.client.bind}",
        f"--advertise-client-urls=http://{member.client.address}",
        f"--listen-peer-urls=http://{member.peer.bind}",
        f"--initial-advertise-peer-urls=http://{member.peer.address}",
        f"--initial-cluster={cluster}",
        f"--initial-cluster-token={plan.scope}-etcd",
        "--initial-cluster-state=new",
        "--auto-compaction-retention=1",
    ]
