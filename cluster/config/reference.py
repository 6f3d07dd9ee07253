"""The config reference, generated from the models so the docs can never disagree with the validator.

`python -m cluster.config.reference` prints it; `--write` refreshes docs/config-reference.md and the README's
section between the config-reference markers (a unit test fails when either is stale).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cluster.config.models import MANAGED_PARAMETERS, ClusterConfig
from cluster.config.sources import PROJECT, project_root
from cluster.config.versions import CITUS_RELEASES, POSTGIS_RELEASES
from cluster.secrets import PASSWORD_KEYS
from cluster.tuning import REASONS, derived_parameters

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def leaf_fields(model: type[BaseModel] = ClusterConfig, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted camelCase key, field) for every settable value, depth first, in declaration order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from leaf_fields(nested, f"{key}.")
        else:
            yield key, field


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is dict:
        return "map"
    if annotation is type(None):
        return "unset"
    return {"IPv4Address": "IPv4 address", "IPv4Network": "IPv4 network"}.get(
        getattr(annotation, "__name__", str(annotation)), getattr(annotation, "__name__", str(annotation))
    )


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{symbol} {getattr(meta, attr)}")
        if getattr(meta, "pattern", None):
            parts.append(f"`{meta.pattern}`")
    return ", ".join(parts)


def _default(field: FieldInfo) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]


def _format(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict) and not value:
        return "`{}`"
    return f"`{value}`"


def _defaults_of_nested(model: type[BaseModel], prefix: str) -> dict[str, Any]:
    """Defaults set on a parent (e.g. resources.database = Limits(memory_mb=768)) win over the child's."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = _model_of(field.annotation)
        if nested is None:
            continue
        if isinstance(field.default, BaseModel):
            for child_name, child in nested.model_fields.items():
                found[f"{key}.{child.alias or child_name}"] = getattr(field.default, child_name)
        found.update(_defaults_of_nested(nested, f"{key}."))
    return found


def render_reference() -> str:
    parent_defaults = _defaults_of_nested(ClusterConfig, "")
    rows = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for key, field in leaf_fields():
        default = _format(parent_defaults[key] if key in parent_defaults else _default(field))
        description = (field.description or "").replace("|", "\\|")
        bounds = _bounds(field).replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {default} | {bounds} | {description} |")
    citus = ", ".join(f"{line} (PostgreSQL {', '.join(map(str, r.postgres))})" for line, r in CITUS_RELEASES.items())
    postgis = ", ".join(f"{line} (PostgreSQL {min(pg)}–{max(pg)})" for line, pg in POSTGIS_RELEASES.items())
    managed = "\n".join(f"- `{name}`: set by {owner}" for name, owner in MANAGED_PARAMETERS.items())
    passwords = "\n".join(f"- `{key}`" for key in PASSWORD_KEYS)
    defaults = derived_parameters(ClusterConfig())
    derived = "\n".join(f"- `{name}` (`{defaults[name]}` with the defaults above): {why}."
                        for name, why in REASONS.items())
    return "\n".join(
        [
            "Set a key with `pulumi config set --path <key> <value>` (for example",
            f"`pulumi config set --path workers.groups 4`); in a stack file every key carries the `{PROJECT}:` prefix.",
            "Unknown keys are errors. Generated from `cluster/config/models.py` by",
            "`python -m cluster.config.reference --write`.",
            "",
            *rows,
            "",
            f"Compatible versions. Citus lines: {citus}. PostGIS lines: {postgis}.",
            "",
            "Passwords: only ever from `pulumi config set --secret <key> <value>`; a plain-text value is refused,",
            "an absent one is generated (random, kept secret in the state):",
            "",
            passwords,
            "",
            "`postgresql.parameters` refuses the settings the plan owns:",
            "",
            managed,
            "",
            "Derived from the config (`cluster/tuning.py`), each overridden by the same name in",
            "`postgresql.parameters` (the user's value always wins; none of these is refused). A worker's CPUs are",
            "`resources.database.cpus`, counted as 1 when unset (members then share a host of unknown size):",
            "",
            derived,
        ]
    )


def document() -> str:
    return f"# Configuration reference\n\n{render_reference()}\n"


def readme_with_reference(readme: str) -> str:
    """The README text with the section between the markers replaced by the current reference."""
    head, found, rest = readme.partition(START)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"README.md lacks the {START} ... {END} markers")
    return f"{head}{START}\n{render_reference()}\n{END}{tail}"


def paths(root: Path | None = None) -> tuple[Path, Path]:
    root = root or project_root()
    return root / "docs" / "config-reference.md", root / "README.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.config.reference", description=__doc__)
    parser.add_argument("--write", action="store_true", help="update docs/config-reference.md and README.md")
    args = parser.parse_args(argv)
    if not args.write:
        print(document())
        return 0
    doc, readme = paths()
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(document())
    readme.write_text(readme_with_reference(readme.read_text()))
    print(f"wrote {doc} and the reference section of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
