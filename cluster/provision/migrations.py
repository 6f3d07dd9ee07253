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
from cluster.provision.target import SCHEMA_SETTINGS

log = logging.getLogger("cluster.provision")
TABLE = "citus_cluster_migrations"
SETTINGS_TABLE = "citus_cluster_settings"  # settings a migration used, recorded by that migration


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def to_dict(self) -> dict[str, str]:
        """The shape a dynamic provider's inputs carry (the checksum lets its diff skip comparing texts)."""
        return {"name": self.name, "checksum": self.checksum, "sql": self.sql}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Migration:
        return cls(data["name"], data["sql"])


class SchemaDrift(ProvisionError):
    """An already-applied migration file was edited."""


class SettingChanged(ProvisionError):
    """The stack config changed a setting that an applied migration built the schema with."""


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


def recorded_settings(conn: psycopg.Connection) -> dict[str, str]:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} (name text PRIMARY KEY, value text NOT NULL, "
        "recorded_at timestamptz NOT NULL DEFAULT now())"
    )
    return dict(conn.execute(f"SELECT name, value FROM {SETTINGS_TABLE}").fetchall())


def changed_settings(recorded: dict[str, str], wanted: dict[str, str]) -> list[str]:
    return [
        f"{SCHEMA_SETTINGS.get(name, name)}: the schema was built with {recorded[name]!r}, the stack now says "
        f"{wanted[name]!r}"
        for name in sorted(wanted)
        if name in recorded and recorded[name] != wanted[name]
    ]


def drift(migrations: list[Migration], done: dict[str, str]) -> list[str]:
    return [
        f"{m.name}: applied with checksum {done[m.name][:12]}, file now {m.checksum[:12]}"
        for m in migrations
        if m.name in done and done[m.name] != m.checksum
    ]


def apply(conn: psycopg.Connection, migrations: list[Migration], settings: dict[str, str] | None = None) -> list[str]:
    """Apply the not-yet-applied files in name order, each in its own transaction; return their names.

    `settings` are visible to the files as `current_setting('citus_cluster.<name>')`; one that an applied file
    recorded with another value is refused before anything runs (changing it means moving the data).
    """
    settings = settings or {}
    done = applied(conn)
    drifted = drift(migrations, done)
    if drifted:
        raise SchemaDrift(
            "schema drift: these already-applied files were edited (add a new numbered file instead, or restore "
            "them):\n" + "\n".join(f"  - {d}" for d in drifted)
        )
    changed = changed_settings(recorded_settings(conn), settings)
    if changed:
        raise SettingChanged(
            "the stack changes settings the existing schema was built with; nothing was applied. Put them back, "
            "or move the data with a new migration (e.g. alter_distributed_table) and record the new value:\n"
            + "\n".join(f"  - {c}" for c in changed)
        )
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (f"citus_cluster.{name}", value))
    names = []
    for migration in (m for m in migrations if m.name not in done):
        log.info("applying %s", migration.name)
        with conn.transaction():
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {TABLE} (name, checksum) VALUES (%s, %s)", (migration.name, migration.checksum))
        names.append(migration.name)
    return names
