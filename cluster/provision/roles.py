"""Database roles: the application role's least privilege, and every role password brought to what the stack
says (rotation) without a plaintext password ever reaching the server.

Passwords go over as SCRAM verifiers computed here (cluster.provision.scram), in a session whose statement
logging is off, and only when the stored verifier does not already accept the wanted password, so a re-run
changes nothing. The superuser and replication roles exist once per Citus group (each group is its own
PostgreSQL cluster), so they are set on every group's leader; the application role is created on the
coordinator and Citus propagates it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cluster.plan import GRANT_SET_ON_PARAMETER_SINCE, MONITORING_USER, REPLICATION_USER, SECONDARY_READS, SUPERUSER
from cluster.provision import citus
from cluster.provision.citus import ProvisionError
from cluster.provision.health import member_state
from cluster.provision.migrations import SETTINGS_TABLE, TABLE
from cluster.provision.rest import role as patroni_role
from cluster.provision.scram import pooled_verifier, scram_verifier, verifies
from cluster.provision.target import ClusterTarget, MemberTarget
from cluster.roles import POOLER_AUTH_FUNCTION, POOLER_SCHEMA, POOLER_USER

log = logging.getLogger("cluster.provision")

# Tables the application never writes: the project's bookkeeping (what ran, with which settings). Tables that
# belong to an extension (PostGIS's spatial_ref_sys and views) are left out by catalog, whatever their name.
BOOKKEEPING_TABLES = (TABLE, SETTINGS_TABLE)
APP_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

# Session settings under which role DDL is never logged, whatever the server's logging (Patroni does the same
# around its own role DDL). Custom placeholders (pg_stat_statements, pgaudit) are harmless when not loaded.
QUIET = {
    "log_statement": "none",
    "log_min_duration_statement": "-1",
    "log_min_duration_sample": "-1",
    "log_transaction_sample_rate": "0",
    "log_min_error_statement": "panic",
    "debug_print_parse": "off",
    "debug_print_rewritten": "off",
    "debug_print_plan": "off",
    "pg_stat_statements.track_utility": "off",
    "pgaudit.log": "none",
}


@contextmanager
def unlogged(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Run role DDL with statement logging off for this session only, then put the session back."""
    for name, value in QUIET.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    try:
        yield conn
    finally:
        for name in QUIET:
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(*name.split("."))))


def stored_verifier(conn: psycopg.Connection, role: str) -> str | None:
    row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return None if row is None else row[0]


def set_password(conn: psycopg.Connection, role: str, password: str, *, propagate: bool = True,
                 verifier: str | None = None) -> bool:
    """Make `role` log in with `password` (creating it as a login role if missing); False when it already did.

    `propagate=False` keeps Citus from forwarding the statement: roles that exist per group are set on each
    group's leader instead. `verifier`: exactly this verifier of `password` (PgBouncer's auth file lists it),
    rather than any that accepts the password.
    """
    current = stored_verifier(conn, role)
    if current is not None and (current == verifier if verifier else verifies(current, password)):
        return False
    verb = "CREATE" if current is None and not _exists(conn, role) else "ALTER"
    statement = sql.SQL(f"{verb} ROLE {{}} LOGIN PASSWORD {{}}").format(
        sql.Identifier(role), sql.Literal(verifier or scram_verifier(password)))
    with unlogged(conn), conn.transaction():
        if not propagate:
            conn.execute("SET LOCAL citus.enable_alter_role_propagation = off")
            conn.execute("SET LOCAL citus.enable_create_role_propagation = off")
        conn.execute(statement)
    log.info("role %s: password set", role)
    return True


def _exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def ensure_app_role(conn: psycopg.Connection, target: ClusterTarget) -> list[str]:
    """The application role: its password, and DML on exactly the schema's own tables; returns those tables.

    Run after every migration batch, so tables added later are granted too; the bookkeeping tables and
    extension tables are revoked (earlier versions granted ALL TABLES) and never granted.
    """
    role = sql.Identifier(target.app_user)
    set_password(conn, target.app_user, target.app_password)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(target.database), role))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
        sql.Identifier(target.database), role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    for table in _relations(conn, ("r", "p", "v", "m", "f"), app=False):
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(table), role))
    tables = _relations(conn, ("r", "p", "v"), app=True)
    for table in tables:
        conn.execute(sql.SQL(f"GRANT {APP_TABLE_PRIVILEGES} ON TABLE {{}} TO {{}}").format(
            sql.Identifier(table), role))
    for sequence in _relations(conn, ("S",), app=True):
        conn.execute(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(sql.Identifier(sequence), role))
    grant_secondary_reads(conn, target.app_user)
    return tables


def grant_secondary_reads(conn: psycopg.Connection, role: str) -> bool:
    """Let `role` start sessions with citus.use_secondary_nodes (what the read-only DSN sets, cluster.plan): the
    parameter is PGC_SU_BACKEND, so without this grant its login through that DSN is refused. Granted on the
    coordinator leader only, where sessions start (its standbys replay the grant; the workers never see the
    setting). False below PostgreSQL 15, which has no GRANT SET ON PARAMETER."""
    if conn.info.server_version < GRANT_SET_ON_PARAMETER_SINCE * 10_000:
        return False
    conn.execute(sql.SQL("GRANT SET ON PARAMETER {} TO {}").format(
        sql.Identifier(*SECONDARY_READS[0].split(".")), sql.Identifier(role)))
    return True


def _relations(conn: psycopg.Connection, kinds: Sequence[str], *, app: bool) -> list[str]:
    """Relations of schema public of `kinds`: the application's own (app=True), or the ones it must not write
    (app=False: bookkeeping and extension members). Citus shards are not in the coordinator's catalog view."""
    rows = conn.execute(
        "SELECT c.relname, c.relname = ANY(%s) OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
        "'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = ANY(%s) ORDER BY c.relname",
        (list(BOOKKEEPING_TABLES), list(kinds)),
    ).fetchall()
    return [name for name, reserved in rows if reserved != app]


def group_leaders(target: ClusterTarget, leaders: dict[int, str]) -> list[MemberTarget]:
    return [m for m in target.members if leaders.get(m.group) == m.name]


def sync_group_roles(target: ClusterTarget, leaders: dict[int, str], superuser_dsn_password: str) -> list[str]:
    """Superuser and replication passwords on every group's leader, and the superuser's password where Citus
    keeps it for node-to-node connections (pg_dist_authinfo); returns what changed.

    `superuser_dsn_password` is the password that logs in now (the previous one while rotating it).
    """
    changed = []
    for member in group_leaders(target, leaders):
        with citus.connect(with_password(member.dsn, superuser_dsn_password)) as conn:
            if set_password(conn, SUPERUSER, target.superuser_password, propagate=False,
                            verifier=superuser_verifier(target)):
                changed.append(f"group {member.group}: {SUPERUSER} password")
            if target.replication_password and set_password(
                conn, REPLICATION_USER, target.replication_password, propagate=False
            ):
                changed.append(f"group {member.group}: {REPLICATION_USER} password")
            if set_authinfo_password(conn, SUPERUSER, target.superuser_password):
                changed.append(f"group {member.group}: pg_dist_authinfo for {SUPERUSER}")
    return changed


def sync_monitoring_role(target: ClusterTarget, leaders: dict[int, str]) -> list[str]:
    """The exporters' role on every group's leader (each group is its own PostgreSQL cluster): its password, the
    predefined pg_monitor (statistics, pg_ls_waldir; nothing it could write), and its password in
    pg_dist_authinfo, since citus_shards asks the workers for shard sizes as the role that queries it."""
    if not target.monitoring_password:
        return []
    changed = []
    for member in group_leaders(target, leaders):
        with citus.connect(member.dsn) as conn:
            if set_password(conn, MONITORING_USER, target.monitoring_password, propagate=False,
                            verifier=monitoring_verifier(target)):
                changed.append(f"group {member.group}: {MONITORING_USER} password")
            granted = conn.execute("SELECT pg_has_role(%s, 'pg_monitor', 'MEMBER')", (MONITORING_USER,)).fetchone()
            if granted != (True,):
                with conn.transaction():
                    conn.execute("SET LOCAL citus.enable_create_role_propagation = off")
                    conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(MONITORING_USER)))
                changed.append(f"group {member.group}: pg_monitor granted to {MONITORING_USER}")
            if set_authinfo_password(conn, MONITORING_USER, target.monitoring_password, add=True):
                changed.append(f"group {member.group}: pg_dist_authinfo for {MONITORING_USER}")
    return changed


def sync_app_authinfo(target: ClusterTarget, leaders: dict[int, str]) -> list[str]:
    """The application role's password where Citus looks for it on every group's leader (after the role was
    created and propagated: pg_dist_authinfo refuses a row for a role that does not exist)."""
    changed = []
    for member in group_leaders(target, leaders):
        with citus.connect(member.dsn) as conn:
            if _exists(conn, target.app_user) and set_authinfo_password(
                conn, target.app_user, target.app_password, add=True
            ):
                changed.append(f"group {member.group}: pg_dist_authinfo for {target.app_user}")
    return changed


def set_authinfo_password(conn: psycopg.Connection, role: str, password: str, add: bool = False) -> bool:
    """Replace the password in `role`'s pg_dist_authinfo rows (Patroni writes the superuser's at bootstrap),
    keeping their other settings (sslcert, sslkey, ...); False when there is nothing to change.

    `add` creates the row for every node (nodeid 0) when there is none: Citus opens its node-to-node connections
    as the role that runs the query, and with SCRAM everywhere the application role needs its password there
    too (the catalog is readable by superusers only).
    """
    if not _has_authinfo(conn):
        return False
    rows = conn.execute("SELECT nodeid, authinfo FROM pg_dist_authinfo WHERE rolename = %s", (role,)).fetchall()
    if not rows and add:
        with unlogged(conn):
            conn.execute("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, %s, %s) "
                         "ON CONFLICT DO NOTHING", (role, make_conninfo(password=password)))
        return True
    changed = False
    for nodeid, authinfo in rows:
        params = conninfo_to_dict(authinfo)
        if params.get("password") == password:
            continue
        params["password"] = password
        with unlogged(conn):
            conn.execute("UPDATE pg_dist_authinfo SET authinfo = %s WHERE nodeid = %s AND rolename = %s",
                         (make_conninfo(**params), nodeid, role))
        changed = True
    return changed


def _has_authinfo(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('pg_catalog.pg_dist_authinfo') IS NOT NULL").fetchone() == (True,)


def with_password(dsn: str, password: str, user: str | None = None) -> str:
    """`dsn` with its password (and, given `user`, its role) replaced (the URL form the target carries)."""
    parts = urlsplit(dsn)
    user_host = parts.netloc.rsplit("@", 1)
    user = quote(user, safe="") if user is not None else user_host[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{user_host[-1]}"))


def login_password(target: ClusterTarget, previous: Sequence[str]) -> str:
    """The superuser password the cluster accepts now: the configured one, else one it replaces (rotation).

    When the cluster cannot be reached at all the configured one is returned: the health wait that follows
    says what is wrong.
    """
    for password in (target.superuser_password, *previous):
        try:
            with psycopg.connect(with_password(target.rw_dsn, password), connect_timeout=5):
                return password
        except psycopg.OperationalError as exc:
            if not refused_login(exc):
                return target.superuser_password
    raise ProvisionError(
        f"the cluster refuses the configured superuser password{' and the previous one' if previous else ''}: "
        "expected one of them to log in through the read-write port. Set superuserPassword back to the password "
        "the cluster has (then change it again), or reset it on the members by hand."
    )


def refused_login(exc: BaseException) -> bool:
    """A login refused for its password: PostgreSQL says so; PgBouncer (the read-write port) reports the failed
    SCRAM exchange instead."""
    return any(words in str(exc) for words in ("password authentication failed", "SASL authentication failed"))


# ---- PgBouncer's auth_query ---------------------------------------------------------------------------------
# Databases PgBouncer's auth_query must find the function in: it runs in whichever database the client asked
# for. template1 carries it into every database created later (CREATE DATABASE copies template1).
POOLER_DATABASES = ("template1", "postgres")

# The lookup PgBouncer runs as its auth_user. SECURITY DEFINER, owned by the superuser, with a fixed search_path:
# the auth_user reads a login role's verifier through it and nothing else (never its own, nor the replication
# role's, which PgBouncer does not serve). Roles whose password expired are not found.
POOLER_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {POOLER_SCHEMA}.{POOLER_AUTH_FUNCTION}(p_usename text)
RETURNS TABLE (usename name, passwd text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT rolname, rolpassword FROM pg_catalog.pg_authid
    WHERE rolname = p_usename AND rolcanlogin AND rolname NOT IN ('{POOLER_USER}', '{REPLICATION_USER}')
      AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
$$"""


def superuser_verifier(target: ClusterTarget) -> str | None:
    """The exact verifier the superuser must have when PgBouncer lists it (pooling on), else None (any will do)."""
    if not target.pooler_password:
        return None
    return pooled_verifier(target.superuser_password, SUPERUSER, target.pooler_password)


def monitoring_verifier(target: ClusterTarget) -> str | None:
    """The exact verifier the monitoring role must have when PgBouncer lists it (pooling on: the PgBouncer
    exporter's admin-console login), else None (any will do)."""
    if not target.pooler_password or not target.monitoring_password:
        return None
    return pooled_verifier(target.monitoring_password, MONITORING_USER, target.pooler_password)


def group_leader(target: ClusterTarget, group: int) -> MemberTarget | None:
    """The member of `group` Patroni says leads, or None while there is none."""
    for member in target.members_of(group):
        try:
            if patroni_role(member_state(member, target.ca_file)) == "primary":
                return member
        except (OSError, ValueError):
            continue
    return None


def _leader_session(target: ClusterTarget, group: int, passwords: Sequence[str], deadline: float,
                    database: str | None = None) -> tuple[MemberTarget, psycopg.Connection]:
    """A superuser session on `group`'s leader, straight to its PostgreSQL; waits for a leader whose database
    exists (Patroni's Citus mode creates it after the promotion)."""
    while True:
        leader = group_leader(target, group)
        try:
            if leader is not None:
                dsn = leader.dsn if database is None else _with_database(leader.dsn, database)
                return leader, login(dsn, passwords)
            problem = f"group {group} has no leader"
        except psycopg.OperationalError as exc:
            if refused_login(exc):
                raise
            problem = str(exc).strip().splitlines()[0]
        if time.monotonic() > deadline:
            raise ProvisionError(f"PgBouncer's roles cannot be set: {problem}; check the members with "
                                 "`python -m cluster status`.")
        time.sleep(1)


def ensure_pooler_auth(target: ClusterTarget, previous_superuser_passwords: Sequence[str] = (),
                       timeout: float = 300.0) -> list[str]:
    """What PgBouncer needs before anyone dials the read-write port (which it serves): straight to each group's
    leader, with the configured superuser password or one it replaces. Returns what changed.

    - The superuser's verifier on every group's leader is the one PgBouncer's auth file lists
      (scram.pooled_verifier); a rotated superuser password is set here, on every group at once, since nothing
      logs in through the read-write port with the old one any more once PgBouncer's file changed.
    - PgBouncer's auth_user and its lookup function, on the coordinator only (Citus's role and DDL propagation
      off: workers never see PgBouncer's connections), in template1, postgres and the cluster's database.

    Idempotent; passwords go over as SCRAM verifiers like every other role's.
    """
    if not target.pooler_password:
        return []
    deadline = time.monotonic() + timeout
    passwords = [target.superuser_password, *previous_superuser_passwords]
    changed: list[str] = []
    for group in target.groups:
        _, conn = _leader_session(target, group, passwords, deadline)
        with conn:
            if set_password(conn, SUPERUSER, target.superuser_password, propagate=False,
                            verifier=superuser_verifier(target)):
                changed.append(f"group {group}: {SUPERUSER} password (the verifier PgBouncer's auth file lists)")
    _, conn = _leader_session(target, 0, passwords, deadline)
    with conn:
        if set_password(conn, POOLER_USER, target.pooler_password, propagate=False):
            changed.append(f"group 0: {POOLER_USER} password")
    for database in (*POOLER_DATABASES, target.database):
        _, conn = _leader_session(target, 0, passwords, deadline, database)
        with conn:
            _pooler_objects(conn)
    return changed


def _pooler_objects(conn: psycopg.Connection) -> None:
    schema, user = sql.Identifier(POOLER_SCHEMA), sql.Identifier(POOLER_USER)
    function = sql.SQL("{}.{}(text)").format(schema, sql.Identifier(POOLER_AUTH_FUNCTION))
    with conn.transaction():
        conn.execute("SELECT set_config('citus.enable_ddl_propagation', 'off', true)")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
            schema, sql.Identifier(SUPERUSER)))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, user))
        conn.execute(POOLER_FUNCTION_SQL)
        conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(function, sql.Identifier(SUPERUSER)))
        conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(function))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(function, user))


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def login(dsn: str, passwords: Sequence[str]) -> psycopg.Connection:
    """A superuser session with the first of `passwords` the server accepts."""
    for password in passwords:
        try:
            return psycopg.connect(with_password(dsn, password), autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if not refused_login(exc) or password == passwords[-1]:
                raise
    raise ProvisionError("no superuser password to log in with")
