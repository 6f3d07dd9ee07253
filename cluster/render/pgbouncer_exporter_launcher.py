"""Runs Debian's prometheus-pgbouncer-exporter (1.7) as the cluster needs it; shipped as a file beside its config
(cluster.render.pgbouncer_exporter) and run by the system python3 that has the package, never imported by the
product (it imports only the standard library until main() runs).

The package alone cannot serve this cluster, for three reasons found by running it against PgBouncer 1.18:

- It reads SHOW STATS columns PgBouncer renamed in 1.8 (`total_requests`): against any PgBouncer since, its first
  collection raises KeyError and the process exits. STATS and POOLS are collected here from the columns PgBouncer
  1.18 and every later version have (the package's own LISTS and DATABASES collectors are kept as they are).
- It opens one admin-console session at start and keeps it for ever: once PgBouncer restarts (a failover drill, a
  container restart) every scrape fails until the exporter is restarted. The session here is opened again when
  it broke, so the next scrape after PgBouncer is back succeeds.
- It serves plain HTTP only; every other endpoint of the cluster speaks TLS. Its server here speaks HTTPS only,
  with the member's own certificate (--web-cert/--web-key), as the postgres exporter beside it does.

It logs in to PgBouncer's `pgbouncer` admin database through libpq, so everything about that login comes from
libpq's environment (PGSSLMODE, PGSSLROOTCERT, PGPASSFILE, PGAPPNAME, PGCONNECT_TIMEOUT): no password in its
arguments, its config file or its environment.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys

HANDSHAKE_TIMEOUT = 10.0  # one stalled client must not hold the (single-threaded) server for longer

# SHOW STATS columns of PgBouncer >= 1.8 -> metric name (after the `pgbouncer_` namespace), help text. Counters
# since PgBouncer started, exposed as gauges as the package does (rate() works on them all the same).
STATS = {
    "total_xact_count": ("transactions_total", "SQL transactions pooled"),
    "total_query_count": ("queries_total", "SQL queries pooled"),
    "total_received": ("received_bytes_total", "bytes of network traffic received from clients"),
    "total_sent": ("sent_bytes_total", "bytes of network traffic sent to clients"),
    "total_xact_time": ("transaction_microseconds_total", "microseconds spent in transactions, idle in them included"),
    "total_query_time": ("query_microseconds_total", "microseconds spent actively connected to PostgreSQL"),
    "total_wait_time": ("client_wait_microseconds_total", "microseconds clients waited for a server connection"),
}
# SHOW POOLS columns (one row per database and user). The package's two keep their names; the server-side ones
# are prefixed with pool_ so they never collide with SHOW LISTS' cluster-wide used_servers/free_servers.
POOLS = {
    "cl_active": ("active_clients", "client connections linked to a server connection or idle with no queries"),
    "cl_waiting": ("waiting_clients", "client connections that sent a query and wait for a server connection"),
    "sv_active": ("pool_active_servers", "server connections linked to a client"),
    "sv_idle": ("pool_idle_servers", "server connections unused and ready for a client"),
    "sv_used": ("pool_used_servers", "server connections idle for longer than server_check_delay"),
    "sv_login": ("pool_login_servers", "server connections logging in"),
    "maxwait": ("pool_max_wait_seconds", "seconds the oldest waiting client has waited (0: none waits)"),
}


def main(argv: list[str] | None = None) -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--web-cert", required=True, help="the certificate /metrics is served with (PEM)")
    own.add_argument("--web-key", required=True, help="its private key (PEM)")
    options, rest = own.parse_known_args(sys.argv[1:] if argv is None else argv)

    import psycopg2  # the system python3's, as the package uses it
    from prometheus_pgbouncer_exporter import cli, collectors, utils

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(options.web_cert, options.web_key)

    class Session:
        """The admin-console session the collectors share, opened when first needed and again once it broke."""

        def __init__(self, user: str, port: str, host: str | None) -> None:
            self.args, self.connection = (user, port, host), None

        def current(self):  # type: ignore[no-untyped-def]
            if self.connection is None or self.connection.closed:
                self.connection = utils.get_connection(*self.args)
            return self.connection

        def forget(self) -> None:
            if self.connection is not None:
                try:
                    self.connection.close()
                except psycopg2.Error:
                    pass
            self.connection = None

        def close(self) -> None:
            self.forget()

    def retried(fetch):  # type: ignore[no-untyped-def]
        """`fetch` on the session; once more on a fresh session when the old one broke (PgBouncer restarted)."""
        def run(session: Session, key: str):  # type: ignore[no-untyped-def]
            try:
                return fetch(session.current(), key)
            except psycopg2.Error:
                session.forget()
                return fetch(session.current(), key)
        return run

    collectors.get_data_by_named_column = retried(utils.get_data_by_named_column)
    collectors.get_data_by_named_row = retried(utils.get_data_by_named_row)
    collectors.StatsCollector.metrics = STATS
    collectors.PoolsCollector.metrics = POOLS
    for collector in (collectors.StatsCollector, collectors.PoolsCollector, collectors.DatabasesCollector,
                      collectors.ListsCollector):
        # No query while registering (the package collects once to learn the names): the exporter starts whether
        # or not PgBouncer is up yet, and a scrape says whether it is.
        collector.describe = lambda self: []
    cli.get_connection = Session

    package_handler = cli.create_request_handler

    def create_request_handler(licence_location: str):  # type: ignore[no-untyped-def]
        class Handler(package_handler(licence_location)):  # type: ignore[misc]
            def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
                try:
                    super().do_GET()
                except Exception as exc:  # PgBouncer down or refusing: a failed scrape, one line in the log
                    logging.warning("scrape failed: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
                    self.send_error(503, "PgBouncer cannot be read")

        return Handler

    cli.create_request_handler = create_request_handler

    class TlsServer(cli.HTTPServer):  # type: ignore[misc, name-defined]
        def get_request(self):  # type: ignore[no-untyped-def]
            sock, address = super().get_request()
            sock.settimeout(HANDSHAKE_TIMEOUT)
            return context.wrap_socket(sock, server_side=True), address  # an SSLError is an OSError: skipped

    cli.HTTPServer = TlsServer
    sys.argv = [sys.argv[0], *rest]
    cli.main()


if __name__ == "__main__":
    main()
