"""The generated config reference covers every key and the committed copies are current."""

from cluster.config.reference import END, START, document, leaf_fields, paths, readme_with_reference, render_reference

STALE = "stale: run `python -m cluster.config.reference --write` and commit the result"


def test_every_leaf_key_is_documented_with_its_default() -> None:
    text = render_reference()
    keys = [key for key, _ in leaf_fields()]
    assert len(keys) > 25
    for key in keys:
        assert f"| `{key}` |" in text
    assert "| `workers.groups` | int | `3` | ≥ 1, ≤ 64 |" in text
    assert "| `resources.database.memoryMb` | int | `768` |" in text  # a default set on the parent model
    assert "`superuserPassword`" in text and "`wal_level`" in text


def test_docs_file_is_current() -> None:
    doc, _ = paths()
    assert doc.read_text() == document(), STALE


def test_readme_section_is_current() -> None:
    _, readme = paths()
    text = readme.read_text()
    assert START in text and END in text
    assert readme_with_reference(text) == text, STALE
