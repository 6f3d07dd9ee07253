"""The SQL splitter that lets each migration statement run on its own (see split_statements)."""

from pathlib import Path

import pytest

from cluster.provision.migrations import Migration, drift, read_migrations, split_statements

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def test_splits_on_top_level_semicolons_only() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE a (x text DEFAULT 'it''s; fine');
    /* block; comment */ SELECT 1;
    CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
    CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 2; END; $body$;
    SELECT "odd;name" FROM a
    """
    statements = split_statements(text)
    assert len(statements) == 5
    assert statements[0].endswith("DEFAULT 'it''s; fine')")
    assert statements[2].endswith("$$ SELECT 1; $$")
    assert statements[3].endswith("END; $body$")
    assert statements[4] == 'SELECT "odd;name" FROM a'


def test_comment_only_tail_is_not_a_statement() -> None:
    assert split_statements("SELECT 1;\n-- trailing note\n") == ["SELECT 1"]
    assert split_statements("-- nothing here\n") == []


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_every_shipped_migration_splits_into_statements(path: Path) -> None:
    statements = split_statements(path.read_text())
    assert statements and all(s.rstrip().endswith(";") is False for s in statements)


def test_shipped_migrations_are_numbered_and_ordered() -> None:
    names = [m.name for m in read_migrations(SQL_DIR)]
    assert names and names == sorted(names)
    assert all(name[:4].isdigit() and name[4] == "_" for name in names)


def test_drift_names_the_edited_file() -> None:
    old = Migration("0001_a.sql", "SELECT 1;")
    new = Migration("0001_a.sql", "SELECT 2;")
    assert drift([new], {old.name: old.checksum})[0].startswith("0001_a.sql: applied with checksum")
    assert drift([old], {old.name: old.checksum}) == []


def test_spatial_order_function_is_for_the_superuser_only() -> None:
    """sql/0005 (issue 16): CLUSTER on every shard needs the owner; PUBLIC keeps no EXECUTE on it."""
    migration = next(m for m in read_migrations(SQL_DIR) if m.name == "0005_spatial_order.sql")
    statements = ["\n".join(line for line in s.splitlines() if not line.startswith("--")).strip()
                  for s in split_statements(migration.sql)]
    assert [s.split("(")[0] for s in statements] == [
        "CREATE FUNCTION vehicle_locations_order_by_location",
        "REVOKE ALL ON FUNCTION vehicle_locations_order_by_location"]
    assert statements[1].endswith("FROM PUBLIC")
    assert "pg_is_in_recovery()" in statements[0] and "rolsuper" in statements[0]
