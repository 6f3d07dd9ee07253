"""A password rotation on a running cluster, as a reload: new secret files delivered into the members, no restart.

The member's secret files (Patroni's secrets file, PgBouncer's auth file) are container uploads in Docker, and
pulumi-docker replaces a container whose upload changed: every PostgreSQL would restart, the replicas with the
new replication password before the roles had it. So the stack ignores later changes to those uploads' content
(cluster.component) and provisioning delivers the new files itself. It reaches the members only through their
published PostgreSQL and Patroni ports, so it writes the files through PostgreSQL, as the superuser, who may
write what the server's OS user owns: adminpack's pg_file_write, the content as a bound parameter, in a session
whose statement logging is off (roles.unlogged), so neither the server log nor pg_stat_activity shows it. The
file is created by the server, hence 0600 and the server user's (PostgreSQL's umask). PgBouncer is told to
reread its auth file, and Patroni its secrets file, by a fixed command (COPY ... TO PROGRAM: SIGHUP to the PID
their starter recorded, see signal_reload).

The harness rotates through this module too, so the path Docker stacks take is the one the real-process tests
run. The order is the harness's, measured there: PgBouncer's auth_user and file first (provisioning then logs in
through the read-write port, i.e. through PgBouncer), then the roles, a login as the application role through
PgBouncer (prime_pool), then Patroni's file and reload, and it returns once every replica's pgpass holds the new
replication password.
"""

from __future__ import annotations

import logging
import shlex
import time
import urllib.error
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from cluster.plan import REPLICATION_USER, RESTAPI_USER, STATS_USER
from cluster.provision import ProvisionError, ProvisionResult
from cluster.provision.rest import basic_status, rest_json, rest_send
from cluster.provision.rest import role as member_role
from cluster.provision.roles import ensure_pooler_auth, login, unlogged, with_password
from cluster.provision.target import ClusterTarget, MemberTarget
from cluster.render.secret_files import MemberSecrets

log = logging.getLogger(__name__)

WAIT = 60.0  # per member: Patroni takes a reload on its next loop (loop_wait), a replica's pgpass the loop after


def rotate(target: ClusterTarget, secrets: Sequence[MemberSecrets], previous_superuser_passwords: Sequence[str],
           provision_step: Callable[[], ProvisionResult]) -> ProvisionResult:
    """Deliver `secrets` into the running members around `provision_step` (which sets the roles)."""
    changed = ensure_pooler_auth(target, previous_superuser_passwords)
    passwords = [target.superuser_password, *previous_superuser_passwords]
    by_name = {m.name: m for m in target.members}
    ensure_adminpack(target, passwords)
    for s in secrets:
        if s.pooler_file:
            with _session(by_name[s.member], passwords) as conn:
                write_file(conn, s.pooler_file, s.pooler_text)
                signal_reload(conn, s.member, "PgBouncer", s.pooler_pid_file)
    result = provision_step()
    result.passwords_changed = changed + result.passwords_changed
    if target.pooler_password and target.app_password:
        prime_pool(target)
    for s in secrets:
        with _session(by_name[s.member], passwords) as conn:
            write_file(conn, s.patroni_file, s.patroni_text)
            signal_reload(conn, s.member, "Patroni", s.patroni_pid_file)
    for s in secrets:  # a hand-made target may know neither the REST nor the replication password: no proof then
        member = by_name[s.member]
        if target.rest_password:
            _wait(member.name, lambda m=member: _takes_rest_password(m, target),
                  "Patroni to take the new REST password")
    for s in secrets:
        member = by_name[s.member]
        if not target.replication_password or _role(member, target) == "primary":
            continue  # a leader's pgpass is rewritten when it next follows someone
        _wait(member.name, lambda m=member, s=s: pgpass_holds(read_file(m, passwords, s.pgpass_file),
                                                               REPLICATION_USER, target.replication_password),
              "Patroni to write the new replication password into its pgpass")
    log.info("secret files delivered to %d members; Patroni and PgBouncer reloaded", len(secrets))
    return result


def prime_pool(target: ClusterTarget) -> None:
    """One login as the application role with its new password through the read-write port, i.e. the leader's
    PgBouncer. PgBouncer 1.18 opens server connections with the SCRAM keys of the role's latest client login, and
    its reload (the new auth file) dropped the idle ones: a session that logged in before the rotation would wait
    for a server connection, until query_wait_timeout (120 s), for someone to log in with the new password."""
    dsn = with_password(target.rw_dsn, target.app_password, user=target.app_user)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5, prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise ProvisionError(f"the application role {target.app_user!r} could not log in through the read-write "
                             f"port with its new password ({exc}); sessions pooled by PgBouncer before the "
                             "rotation wait for a server connection until one does") from exc


def takes_stats_password(url: str, old: str, new: str, ca_file: str | None) -> bool:
    """True once HAProxy's stats page refuses the old password and takes the new one (its launcher reloads it
    within a second of a new secrets file: the harness writes that file, a Docker stack's courier container)."""
    return (basic_status(url, STATS_USER, old, ca_file), basic_status(url, STATS_USER, new, ca_file)) == (401, 200)


def wait_stats_password(url: str, old: str, new: str, ca_file: str | None, timeout: float = WAIT) -> None:
    _wait("HAProxy", lambda: takes_stats_password(url, old, new, ca_file), "its stats page to take the new "
          "password (its launcher reloads it when the courier container has copied the new secrets file)", timeout)


def ensure_adminpack(target: ClusterTarget, passwords: Sequence[str]) -> None:
    """adminpack on every group's leader (its functions are the superuser's only), then on every replica by
    replication. Local to each node: Citus's DDL propagation is off for it."""
    for group in target.groups:
        leader = next(m for m in target.members_of(group) if _role(m, target) == "primary")
        with _session(leader, passwords) as conn, conn.transaction():
            conn.execute("SELECT set_config('citus.enable_ddl_propagation', 'off', true)")
            conn.execute("CREATE EXTENSION IF NOT EXISTS adminpack")
    for member in target.members:
        _wait(member.name, lambda m=member: _has_adminpack(m, passwords), "adminpack to reach it by replication")


def write_file(conn: psycopg.Connection, path: str, text: str) -> None:
    """Replace the file at `path` on the member's host (pg_file_write refuses to overwrite: unlink first)."""
    with unlogged(conn):
        conn.execute("SELECT pg_catalog.pg_file_unlink(%s)", (path,))
        conn.execute("SELECT pg_catalog.pg_file_write(%s, %s, false)", (path, text))


def reload_command(pid_file: str) -> str:
    """The shell command COPY ... TO PROGRAM runs to SIGHUP the PID in `pid_file`. It reads the row COPY writes
    to it before it signals: a program that exits first leaves PostgreSQL writing into a closed pipe, and the
    COPY fails with "could not close pipe to external command: Broken pipe" although the signal went out (seen
    once in a full test run)."""
    return f'cat >/dev/null; kill -HUP "$(cat {shlex.quote(pid_file)})"'


def signal_reload(conn: psycopg.Connection, member: str, server: str, pid_file: str) -> None:
    """SIGHUP to the PID in `pid_file` on the member's host: Patroni and PgBouncer reread their files. A signal,
    not Patroni's REST reload: that needs the REST password Patroni runs with, which a container created with
    its first files (the stack ignores their later changes) may still have from its creation."""
    command = reload_command(pid_file)
    try:
        conn.execute(sql.SQL("COPY (SELECT 1) TO PROGRAM {}").format(sql.Literal(command)))
    except psycopg.Error as exc:
        raise ProvisionError(f"{member}: {server} could not be told to reread its files ({command!r} failed: "
                             f"{exc}); is it running? Its new files are in place: it takes them at its next start"
                             ) from exc


def read_file(member: MemberTarget, passwords: Sequence[str], path: str) -> str:
    with _session(member, passwords) as conn:
        return str(conn.execute("SELECT pg_catalog.pg_read_file(%s)", (path,)).fetchone()[0])  # type: ignore[index]


def pgpass_holds(text: str, user: str, password: str) -> bool:
    """True when every line of Patroni's pgpass for `user` carries `password` (escaped as Patroni writes it)."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    lines = [line for line in text.splitlines() if f":{user}:" in line]
    return bool(lines) and all(line.endswith(f":{user}:{escaped}") for line in lines)


def _session(member: MemberTarget, passwords: Sequence[str]) -> psycopg.Connection:
    return login(member.dsn, passwords)


def _has_adminpack(member: MemberTarget, passwords: Sequence[str]) -> bool:
    with _session(member, passwords) as conn:
        return conn.execute("SELECT to_regproc('pg_catalog.pg_file_write') IS NOT NULL").fetchone() == (True,)


def _role(member: MemberTarget, target: ClusterTarget) -> str | None:
    return member_role(rest_json(f"{member.patroni_url}/patroni", timeout=5, ca_file=target.ca_file))


def _takes_rest_password(member: MemberTarget, target: ClusterTarget) -> bool:
    """True once Patroni accepts the new REST password on an unsafe endpoint (a reload changes nothing itself)."""
    try:
        rest_send(f"{member.patroni_url}/reload", {}, (RESTAPI_USER, target.rest_password), ca_file=target.ca_file)
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return False
        raise


def _wait(member: str, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, psycopg.Error) as exc:
            last = exc
        time.sleep(0.3)
    raise ProvisionError(f"{member}: waited {timeout:.0f} s for {what}" + (f" (last error: {last})" if last else ""))
