"""Schema as code: the ordered files of sql/ applied once each, with a checksum to catch edits.

An applied file that changed on disk is drift and an error: re-running edited DDL silently is how schemas
rot. Write a new numbered file instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
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


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]?[A-Za-z0-9_]*\$")


def split_statements(text: str) -> list[str]:
    """The statements of a SQL file, split on top-level semicolons (not inside quotes, comments or $$ bodies).

    Each runs on its own: Citus forwards some DDL to the workers using the text it was given, and a worker
    refuses several commands in one prepared statement (seen with CREATE INDEX after create_distributed_table).
    """
    statements, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
            continue
        elif c in "'\"":
            i = text.find(c, i + 1)
            while i >= 0 and text.startswith(c * 2, i):  # doubled quote = escaped quote
                i = text.find(c, i + 2)
            i = n if i < 0 else i
        elif c == "$" and (tag := _DOLLAR_TAG.match(text, i)):
            end = text.find(tag.group(), tag.end())
            i = n if end < 0 else end + len(tag.group()) - 1
        elif c == ";":
            statements.append(text[start:i])
            start = i + 1
        i += 1
    statements.append(text[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in statement.splitlines())


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
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {TABLE} (name, checksum) VALUES (%s, %s)", (migration.name, migration.checksum))
        names.append(migration.name)
    return names
