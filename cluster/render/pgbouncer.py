"""pgbouncer.ini of each coordinator member, and its auth file: PgBouncer between HAProxy and PostgreSQL.

A Citus coordinator opens connections to every worker for each client session, so a few hundred application
connections would exhaust max_connections. PgBouncer on every coordinator member takes the clients (up to
pooling.maxClientConnections) and runs their transactions over a small pool of server connections
(pooling.poolSize per database and role). HAProxy still chooses the leader by Patroni's REST checks; it only sends
the read-write traffic to the leader's PgBouncer instead of its PostgreSQL.

- **Pool modes.** Applications are pooled per transaction. The superuser (operations: provisioning, migrations,
  `psql`) is pooled per session, so SET, advisory locks, temporary tables and the session-level settings role
  DDL relies on keep working; its concurrent sessions are bounded by the same pool size.
- **No password list.** Every role is looked up on the server through `auth_query`, which calls a SECURITY
  DEFINER function owned by the superuser (cluster.provision.roles.ensure_pooler_auth creates it); the auth file
  holds the auth_user's own credential and the superuser's SCRAM verifier (no user's password), delivered as a
  secret (0600, the server user's), like Patroni's secrets file. Clients authenticate with SCRAM against the
  stored verifier and PgBouncer reuses their SCRAM keys to log in to PostgreSQL: no plaintext user password
  ever reaches PgBouncer.
- **TLS on both sides.** Clients must speak TLS to PgBouncer, which presents the member's own certificate (its
  names already cover every address clients dial); PgBouncer verifies PostgreSQL's certificate against the
  stack CA and the member's name (verify-full), like every other client of the cluster.
- **Prepared statements.** PgBouncer 1.18 (Debian 12) cannot carry protocol-level prepared statements across
  transactions: clients must not prepare server-side (psycopg: `prepare_threshold=None`; see the README).
"""

from __future__ import annotations

from cluster.plan import MONITORING_USER, SSLMODE, SUPERUSER, Member, Plan
from cluster.roles import POOLER_AUTH_FUNCTION, POOLER_SCHEMA, POOLER_USER
from cluster.tls import TlsPaths

AUTH_QUERY = f"SELECT usename, passwd FROM {POOLER_SCHEMA}.{POOLER_AUTH_FUNCTION}($1)"
TLS_PROTOCOLS = "tlsv1.2,tlsv1.3"
# A server login that failed (the member restarting, a failover in progress) is retried after this many seconds
# (PgBouncer's default: 15): writes come back as soon as the new leader takes them.
SERVER_LOGIN_RETRY = 1
SERVER_CONNECT_TIMEOUT = 5
RESERVE_POOL_TIMEOUT = 3


def render_pgbouncer(plan: Plan, member: Member) -> str:
    """pgbouncer.ini for coordinator member `member` (which must have a pooler: pooling.enabled)."""
    pooler = member.pooler
    if pooler is None:
        raise ValueError(f"{member.name} runs no PgBouncer (coordinator members only, with pooling.enabled)")
    pooling = plan.config.pooling
    tls = TlsPaths(member.tls_dir)
    settings = {
        "listen_addr": pooler.endpoint.listen,
        "listen_port": pooler.endpoint.port,
        "unix_socket_dir": "",  # TCP only: every client comes through HAProxy
        "auth_type": "scram-sha-256",
        "auth_file": pooler.auth_file,
        "auth_user": POOLER_USER,
        "auth_query": AUTH_QUERY,
        "pool_mode": "transaction",
        "default_pool_size": pooling.pool_size,
        "reserve_pool_size": pooling.reserve_pool_size,
        "reserve_pool_timeout": RESERVE_POOL_TIMEOUT,
        "max_client_conn": pooling.max_client_connections,
        "server_login_retry": SERVER_LOGIN_RETRY,
        "server_connect_timeout": SERVER_CONNECT_TIMEOUT,
        # Drivers send these at startup; PgBouncer would refuse the connection for an unknown parameter.
        "ignore_startup_parameters": "extra_float_digits",
        "client_tls_sslmode": "require",
        "client_tls_cert_file": tls.cert,
        "client_tls_key_file": tls.key,
        "client_tls_ca_file": tls.ca,
        "client_tls_protocols": TLS_PROTOCOLS,
        "server_tls_sslmode": SSLMODE,
        "server_tls_ca_file": tls.ca,
        "server_tls_protocols": TLS_PROTOCOLS,
        "logfile": "",  # stderr: the container's log, the harness's log file
        "syslog": 0,
        "log_connections": 0,  # a thousand clients would flood the log; errors are still logged
        "log_disconnections": 0,
    }
    if plan.monitored:
        # prometheus-pgbouncer-exporter's login to the admin console: SHOW commands only. PgBouncer 1.18 never runs
        # auth_query for the admin console, so the role is in the auth file (by its verifier).
        settings["stats_users"] = MONITORING_USER
    lines = [
        f"; PgBouncer of {member.name}: clients (through HAProxy) -> {member.postgres.address}.",
        "; Rendered by citus-cluster from the stack config; edit the config, not this file.",
        "[databases]",
        # Any database, on this member's PostgreSQL, by the name the client asked for.
        f"* = host={member.postgres.host} port={member.postgres.port}",
        "",
        "[users]",
        f"{SUPERUSER} = pool_mode=session",
        "",
        "[pgbouncer]",
        *(f"{key} = {value}" for key, value in settings.items()),
        "",
    ]
    return "\n".join(lines)


def render_pgbouncer_auth(pooler_password: str, superuser_verifier: str, monitoring_verifier: str | None = None) -> str:
    """The auth file: the auth_user's own password (PgBouncer logs in with it to run auth_query), and the
    superuser's SCRAM verifier, never its password. The superuser must be listed: PgBouncer 1.18 treats a role
    named in [users] (the superuser's session pooling) as known and would not look it up through auth_query.
    The verifier must be the one the server stores (see cluster.provision.scram.pooled_verifier).

    `monitoring_verifier` (where the exporters run): the monitoring role's, for the PgBouncer exporter's login to
    the admin console, which PgBouncer 1.18 authenticates from this file only (never through auth_query). The
    server stores the same verifier, so the role's logins to real databases through PgBouncer still work."""
    entries = [(SUPERUSER, superuser_verifier)]
    if monitoring_verifier is not None:
        entries.append((MONITORING_USER, monitoring_verifier))
    for role, verifier in entries:
        if not verifier.startswith("SCRAM-SHA-256$"):
            raise ValueError(f"the entry of {role} must be a SCRAM verifier, not a password")

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    lines = [(POOLER_USER, pooler_password), *entries]
    return "".join(f"{quoted(role)} {quoted(secret)}\n" for role, secret in lines)
