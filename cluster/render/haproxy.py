"""haproxy.cfg: the read-write and read-only entry points, chosen by Patroni's REST health checks.

HAProxy never guesses who leads: it asks every coordinator member's Patroni (`GET /primary` answers 200 on
the leader only, `GET /replica` on healthy replicas) once a second and routes accordingly.
"""

from __future__ import annotations

from cluster.plan import STATS_USER, Member, Plan

STATS_PASSWORD_ENV = "HAPROXY_STATS_PASSWORD"

# Health-check cadence: a dead leader is out of rotation after FALL * INTER; its sessions are cut at once
# (on-marked-down shutdown-sessions) so clients reconnect to the new leader instead of hanging.
INTER = "1s"
FALL = 2
RISE = 2


def render_haproxy(plan: Plan) -> str:
    b = plan.balancer
    coordinators = plan.coordinators
    lines = [
        f"# HAProxy for {plan.scope}: rw -> coordinator leader, ro -> coordinator replicas (else leader).",
        "global",
        "    maxconn 2000",
        "    log stdout format raw local0 info",
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    timeout connect 3s",
        "    timeout client 30m",
        "    timeout server 30m",
        "    timeout check 2s",
        f"    default-server inter {INTER} fall {FALL} rise {RISE} on-marked-down shutdown-sessions"
        + ("" if plan.dns_resolver is None else " resolvers cluster init-addr last,libc,none"),
        "",
    ]
    if plan.dns_resolver is not None:
        lines += [
            "resolvers cluster",
            f"    nameserver docker {plan.dns_resolver}",
            "    hold valid 1s",
            "",
        ]
    lines += [
        "frontend read_write",
        f"    bind {b.read_write.bind}",
        "    default_backend coordinator_primary",
        "",
        "frontend read_only",
        f"    bind {b.read_only.bind}",
        "    use_backend coordinator_replicas if { nbsrv(coordinator_replicas) gt 0 }",
        "    default_backend coordinator_primary",
        "",
        *_any_node(plan),
        *_backend("coordinator_primary", "/primary", "first", coordinators),
        *_backend("coordinator_replicas", "/replica", "leastconn", coordinators),
        "listen stats",
        f"    bind {b.stats.bind}",
        "    mode http",
        "    stats enable",
        "    stats uri /",
        "    stats refresh 5s",
        f'    stats auth "{STATS_USER}:${{{STATS_PASSWORD_ENV}}}"',
        "",
    ]
    return "\n".join(lines)


def _any_node(plan: Plan) -> list[str]:
    """Sessions spread over the leaders of every group: Citus plans a query on whichever node receives it
    (metadata is synced to the workers), so reads and DML scale past the coordinator. DDL stays on rw."""
    if plan.balancer.any_node is None:
        return []
    return [
        "frontend any_node",
        f"    bind {plan.balancer.any_node.bind}",
        "    default_backend group_leaders",
        "",
        *_backend("group_leaders", "/primary", "leastconn", plan.members),
    ]


def _backend(name: str, check_path: str, balance: str, members: tuple[Member, ...]) -> list[str]:
    return [
        f"backend {name}",
        f"    balance {balance}",
        "    option httpchk",
        f"    http-check send meth GET uri {check_path}",
        "    http-check expect status 200",
        *(f"    server {m.name} {m.postgres.address} check port {m.api.port}" for m in members),
        "",
    ]
