"""haproxy.cfg: the read-write and read-only entry points, chosen by Patroni's REST health checks.

HAProxy never guesses who leads: it asks every coordinator member's Patroni (`GET /primary` answers 200 on
the leader only, `GET /replica` on healthy replicas) once a second and routes accordingly. Those checks speak
HTTPS and verify Patroni's certificate against the cluster CA and the member's name; the stats page is HTTPS,
and serves HAProxy's built-in Prometheus exporter at /metrics behind the same credential, which lives in a second
file (render_haproxy_secrets) so that haproxy.cfg holds no secret and a new password is a reload, not a restart.
PostgreSQL traffic passes through in TCP mode, so TLS runs end to end between the client and the member (its
PgBouncer, with pooling.enabled: the read-write backend still checks each coordinator's Patroni, but sends the
leader's traffic to the PgBouncer on that member's host).

The read-only listener prefers the coordinator standbys and falls back to the leader when none is healthy: its
sessions start with citus.use_secondary_nodes = always (the DSN's options, cluster.plan), so even on the leader
they read the shards on the workers' standbys and refuse writes; failing instead would leave readers without an
endpoint from a coordinator failover until the old leader rejoins (README, Read scaling). With pooling that fallback
goes to the leader's PostgreSQL, not its PgBouncer: PgBouncer refuses startup options (`options=-c ...`), which is
how a read-only session asks for the secondaries.
"""

from __future__ import annotations

from cluster.plan import STATS_USER, Member, Plan
from cluster.tls import TlsPaths

METRICS_PATH = "/metrics"  # HAProxy's built-in Prometheus exporter, on the stats listener (HTTPS, basic auth)
STATS_USERLIST = "stats_users"

# Health-check cadence: a dead leader is out of rotation after FALL * INTER; its sessions are cut at once
# (on-marked-down shutdown-sessions) so clients reconnect to the new leader instead of hanging.
INTER = "1s"
FALL = 2
RISE = 2
# A server that is DOWN (the old leader, a replica being promoted) is checked twice as often, and once its
# state starts to change the confirming checks come 250 ms apart: a new leader takes writes ~1 s sooner.
DOWNINTER = "500ms"
FASTINTER = "250ms"

# Backend names: `python -m cluster status` reads HAProxy's view of each by these names.
PRIMARY_BACKEND = "coordinator_primary"  # the coordinator leader (GET /primary)
REPLICAS_BACKEND = "coordinator_replicas"  # coordinator replicas (GET /replica)
LEADERS_BACKEND = "group_leaders"  # every group's leader (the any-node listener)
# The read-only listener's fallback to the coordinator leader when pooled (its PostgreSQL, bypassing PgBouncer).
LEADER_READS_BACKEND = "coordinator_leader_reads"


def render_haproxy(plan: Plan) -> str:
    b = plan.balancer
    tls = TlsPaths(b.tls_dir)
    coordinators = plan.coordinators
    reads_fallback = LEADER_READS_BACKEND if plan.pooled else PRIMARY_BACKEND
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
        f"    default-server inter {INTER} downinter {DOWNINTER} fastinter {FASTINTER} fall {FALL} rise {RISE}"
        " on-marked-down shutdown-sessions"
        f" check-ssl verify required ca-file {tls.ca}"
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
        f"    default_backend {PRIMARY_BACKEND}",
        "",
        "frontend read_only",
        f"    bind {b.read_only.bind}",
        f"    use_backend {REPLICAS_BACKEND} if {{ nbsrv({REPLICAS_BACKEND}) gt 0 }}",
        f"    default_backend {reads_fallback}",
        "",
        *_any_node(plan),
        *_backend(PRIMARY_BACKEND, "/primary", "first", coordinators, pooled=plan.pooled),
        *_backend(REPLICAS_BACKEND, "/replica", "leastconn", coordinators),
        *(_backend(LEADER_READS_BACKEND, "/primary", "first", coordinators) if plan.pooled else []),
        # One credential (userlist {STATS_USERLIST}, in the secrets file) guards the stats page and /metrics
        # (Prometheus sends it from a password file); the exporter answers before a `stats auth` would ask, so
        # the check is an explicit rule in front of both.
        "listen stats",
        f"    bind {b.stats.bind} ssl crt {tls.pem}",
        "    mode http",
        f"    http-request auth realm stats unless {{ http_auth({STATS_USERLIST}) }}",
        f"    http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }}",
        "    stats enable",
        "    stats uri /",
        "    stats refresh 5s",
        "",
    ]
    return "\n".join(lines)


def render_haproxy_secrets(stats_password: str) -> str:
    """The second config file: the stats userlist. Single-quoted, the one quoting in which HAProxy expands
    nothing (no `$VAR`, no escapes); a quote in the password closes, escapes and reopens."""
    quoted = "'" + stats_password.replace("'", "'\\''") + "'"
    return "\n".join([
        "# The stats credential (HAProxy reads this file after haproxy.cfg; 0600).",
        f"userlist {STATS_USERLIST}",
        f"    user {STATS_USER} insecure-password {quoted}",
        "",
    ])


RELOAD_POLL_SECONDS = 1  # how often the launcher looks at the secrets file

# HAProxy's launcher, the same in the container and in the harness: whoever writes a new secrets file (Docker: the
# one-shot courier container through the shared volume; the harness: itself) needs no channel to HAProxy's
# processes, and the container is never replaced for a new stats password. POSIX sh (dash in Debian and in the
# official haproxy image). The watch is a child of its own that ends with the master; the launcher waits for the
# master (again after a trapped signal interrupted the wait) and exits with its status.
LAUNCHER = rf"""#!/bin/sh
# HAProxy's launcher, rendered by citus-cluster: runs HAProxy (master-worker) and reloads it when its secrets
# file changes: SIGUSR2 to the master starts new workers on the same listeners while the old ones finish their
# sessions, so no connection is cut. Stop signals are passed on (USR1: soft stop, the haproxy image's).
# Usage: haproxy-launcher.sh SECRETS_FILE HAPROXY_COMMAND...
secrets=$1
shift
"$@" &
master=$!
trap 'kill -TERM "$master" 2>/dev/null' TERM INT
trap 'kill -USR1 "$master" 2>/dev/null' USR1
(
    seen=$(cksum < "$secrets" 2>/dev/null)
    while kill -0 "$master" 2>/dev/null && sleep {RELOAD_POLL_SECONDS}; do
        now=$(cksum < "$secrets" 2>/dev/null) || continue
        [ "$now" = "$seen" ] && continue
        seen=$now
        echo "haproxy-launcher: $secrets changed: reloading HAProxy (SIGUSR2 to $master)" >&2
        kill -USR2 "$master"
    done
) &
while :; do
    wait "$master"
    status=$?
    [ "$status" -gt 128 ] && kill -0 "$master" 2>/dev/null && continue  # a trapped signal, not its end
    exit "$status"
done
"""


def haproxy_command(plan: Plan, binary: str = "haproxy") -> list[str]:
    """HAProxy under its launcher (LAUNCHER, at the balancer's launcher_path): both files, master-worker mode (-W)
    so that SIGUSR2 to the master rereads them and new workers take the listeners while the old ones finish their
    sessions; -db keeps it in the foreground."""
    b = plan.balancer
    return ["/bin/sh", b.launcher_path, b.secrets_path, binary, "-W", "-db", "-f", b.config_path, "-f", b.secrets_path]


def courier_command(plan: Plan, staged: str, owner: str) -> list[str]:
    """The Docker stack's one-shot writer of the secrets file: copies its upload (`staged`) into the volume HAProxy
    reads, owned by HAProxy's user, 0600, by a rename (HAProxy's launcher never sees half a file)."""
    target = plan.balancer.secrets_path
    script = ('set -eu; tmp="$2.new"; cp "$1" "$tmp"; chown "$3:$3" "$tmp"; chmod 600 "$tmp"; mv -f "$tmp" "$2"')
    return ["/bin/sh", "-c", script, "courier", staged, target, owner]


def _any_node(plan: Plan) -> list[str]:
    """Sessions spread over the leaders of every group: Citus plans a query on whichever node receives it
    (metadata is synced to the workers), so reads and DML scale past the coordinator. DDL stays on rw."""
    if plan.balancer.any_node is None:
        return []
    return [
        "frontend any_node",
        f"    bind {plan.balancer.any_node.bind}",
        f"    default_backend {LEADERS_BACKEND}",
        "",
        *_backend(LEADERS_BACKEND, "/primary", "leastconn", plan.members),
    ]


def _backend(name: str, check_path: str, balance: str, members: tuple[Member, ...], pooled: bool = False) -> list[str]:
    """`pooled`: traffic goes to each member's PgBouncer; the check still asks its Patroni."""
    return [
        f"backend {name}",
        f"    balance {balance}",
        "    option httpchk",
        f"    http-check send meth GET uri {check_path}",
        "    http-check expect status 200",
        # verifyhost: the certificate must be this member's (its name is a DNS SAN of its own certificate only;
        # HAProxy matches DNS names, never IP SANs, so the address would not do in a layout that dials IPs).
        *(f"    server {m.name} {_target(m, pooled)} check port {m.api.port} verifyhost {m.name}" for m in members),
        "",
    ]


def _target(member: Member, pooled: bool) -> str:
    if pooled and member.pooler is not None:
        return member.pooler.endpoint.address
    return member.postgres.address
