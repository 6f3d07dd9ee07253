"""Schema as code: the ordered files of sql/ applied once each, with a checksum to catch edits.

An applied file that changed on disk is drift and an error: re-running edited DDL silently is how schemas
rot. Write a new numbered file instead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cluster.provision.citus import ProvisionError

log = logging.getLogger("cluster.provision")
TABLE = "citus_cluster_migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class SchemaDrift(ProvisionError):
    """An already-applied migration file was edited."""


def read_migrations(directory: Path) -> list[Migration]:
    return [Migration(p.name, p.read_text()) for p in sorted(directory.glob("*.sql"))]


def applied(conn: psycopg.Connection) -> dict[str, str]:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (name text PRIMARY KEY, checksum text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return dict(conn.execute(f"SELECT name, checksum FROM {TABLE}").fetchall())


def drift(migrations: list[Migration], done: dict[str, str]) -> list[str]:
    return [
        f"{m.name}: applied with checksum {done[m.name][:12]}, file now {m.checksum[:12]}"
        for m in migrations
        if m.name in done and done[m.name] != m.checksum
    ]


def apply(conn: psycopg.Connection, migrations: list[Migration]) -> list[str]:
    """Apply the not-yet-applied files in name order, each in its own transaction; return their names."""
    done = applied(conn)
    drifted = drift(migrations, done)
    if drifted:
        raise SchemaDrift(
            "schema drift: these already-applied files were edited (add a new numbered file instead, or restore "
            "them):\n" + "\n".join(f"  - {d}" for d in drifted)
        )
    names = []
    for migration in (m for m in migrations if m.name not in done):
        log.info("applying %s", migration.name)
        with conn.transaction():
            conn.execute(migration.sql)
            conn.execute(f"INSERT INTO {TABLE} (name, checksum) VALUES (%s, %s)", (migration.name, migration.checksum))
        names.append(migration.name)
    return names
