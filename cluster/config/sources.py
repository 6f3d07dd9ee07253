"""Where raw stack values come from: a stack YAML file on disk, or the running Pulumi program.

Both return the same shape, `(values, secret_keys)` with the project prefix stripped, so `load_config`
validates a file read by `python -m cluster render` exactly as it validates `pulumi up`.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster.config.load import ConfigError, Problem

PROJECT = "citus-cluster"
RawConfig = tuple[dict[str, Any], frozenset[str]]


def stack_file(stack: str, root: Path | None = None) -> Path:
    """Pulumi's file name for stack `stack`: Pulumi.<stack>.yaml at the project root."""
    return (root or project_root()) / f"Pulumi.{stack}.yaml"


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


# Bounds on what a person's stack file may hold: a real one is a few KiB with short values. Past these the file is
# a mistake (or an attack: an alias bomb expands a few lines into billions of nodes), refused before parsing on.
MAX_FILE_BYTES = 1 << 20
MAX_SCALAR_CHARS = 4096
MAX_EXPANDED_NODES = 100_000

# YAML 1.1 (PyYAML) reads these as booleans and 0-led digits as octal; YAML 1.2 and people do not. The only spellings
# taken as written are true/false and plain decimals; the rest are refused rather than silently coerced.
_YAML11_BOOL = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_OCTAL = re.compile(r"^[-+]?0[0-9_]+$")


@dataclass(frozen=True)
class Ambiguous:
    """A scalar YAML 1.1 would coerce (`on` -> true, `0755` -> 493): kept as text until it is reported."""

    text: str
    reading: str  # what YAML 1.1 would have made of it

    def __str__(self) -> str:
        return self.text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that keeps YAML 1.1's surprising booleans and octals as Ambiguous markers."""

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        if _YAML11_BOOL.match(node.value):
            return Ambiguous(node.value, f"the boolean {super().construct_yaml_bool(node)}")
        return super().construct_yaml_bool(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        if _YAML11_OCTAL.match(node.value) and node.value.strip("-+_0"):
            return Ambiguous(node.value, f"the octal number {super().construct_yaml_int(node)}")
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _StrictLoader.construct_yaml_bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def read_stack_file(path: Path) -> RawConfig:
    """Read a Pulumi stack file (or a YAML file in the same shape). Encrypted values count as secrets.

    Whatever the file holds, the result is values or a ConfigError naming the problem: never a traceback and
    never a hang (size, encoding, alias expansion and scalar length are bounded before anything is built).
    """
    document = parse_yaml(_read_text(path), str(path))
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError([Problem(str(path), "expected a mapping with a `config:` mapping inside.")])
    values, secrets = split_project_keys(document.get("config") or {}, is_secret=_is_encrypted)
    problems = ambiguous_problems(values)
    if problems:
        raise ConfigError(problems, source=str(path))
    return values, secrets


def _read_text(path: Path) -> str:
    """The file as text: a regular file, at most MAX_FILE_BYTES, UTF-8 (as Pulumi writes it)."""
    if not path.exists():
        raise ConfigError([Problem(str(path), "file not found; create it or pass --config FILE.")])
    if not path.is_file():
        raise ConfigError([Problem(str(path), "is not a regular file; pass the stack's YAML file.")])
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([Problem(str(path), f"is larger than {MAX_FILE_BYTES // 1024} KiB; a stack file is a "
                                   "few KiB of settings. Check that this is the right file.")])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) > 1 and b"\x00" in data[:2]):
        raise ConfigError([Problem(str(path), "is UTF-16; save it as UTF-8 (Pulumi reads and writes UTF-8).")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), f"is not UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r});"
                                   " save it as UTF-8.")]) from None


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to Python values with bounded work: scalars and the alias-expanded tree are size-capped."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        _check_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(where, f"is not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, where: str) -> None:
    """Refuse scalars longer than MAX_SCALAR_CHARS and trees that expand past MAX_EXPANDED_NODES (aliases are
    shared nodes: counting each use, memoised per node, costs one pass however deep the bomb nests)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a recursive alias counts once instead of looping
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                line = node.start_mark.line + 1
                raise ConfigError([Problem(f"{where}:{line}", f"a value of {len(node.value)} characters; values "
                                           f"are limited to {MAX_SCALAR_CHARS}. Shorten it.")])
            total = 1
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        else:
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        sizes[id(node)] = total = min(total, MAX_EXPANDED_NODES + 1)
        return total

    if size(root) > MAX_EXPANDED_NODES:
        raise ConfigError([Problem(where, f"expands to more than {MAX_EXPANDED_NODES} values through YAML aliases "
                                   "(&anchor / *alias); write the settings out instead of nesting aliases.")])


def ambiguous_problems(values: Any, path: str = "") -> list[Problem]:
    """Every Ambiguous scalar (as key or value) under `values`, by key path, with how to write it."""
    problems: list[Problem] = []
    if isinstance(values, dict):
        for key, value in values.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, Ambiguous):
                problems.append(_ambiguous(child, key))
            problems += ambiguous_problems(value, child)
    elif isinstance(values, list):
        for i, value in enumerate(values):
            problems += ambiguous_problems(value, f"{path}[{i}]")
    elif isinstance(values, Ambiguous):
        problems.append(_ambiguous(path, values))
    return problems


def _ambiguous(key: str, value: Ambiguous) -> Problem:
    return Problem(key, f"found {value.text!r}, which YAML 1.1 reads as {value.reading}. Write true or false for a "
                        f"switch, a plain decimal for a number, or quote it ('{value.text}') if you mean the text.")


def _is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def split_project_keys(entries: dict[str, Any], is_secret: Any) -> RawConfig:
    """Keep this project's keys (`citus-cluster:<key>`), strip the prefix, note which are secret."""
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    problems = []
    for full_key, value in entries.items():
        namespace, _, key = str(full_key).partition(":")
        if not key:
            problems.append(Problem(str(full_key), f"config keys need a namespace, e.g. {PROJECT}:{full_key}."))
            continue
        if namespace != PROJECT:
            if _near_miss(namespace):
                problems.append(Problem(str(full_key), f"unknown namespace {namespace!r}; did you mean "
                                        f"{PROJECT}:{key}? (Keys of other namespaces are left to their providers.)"))
            continue  # other providers' settings (docker:host, ...) are theirs to check
        values[key] = value
        if is_secret(value):
            secrets.add(key)
    if problems:
        raise ConfigError(problems)
    return values, frozenset(secrets)


def _near_miss(namespace: str) -> bool:
    """A namespace that is almost this project's: a typo would otherwise drop every key under it silently."""
    folded = namespace.lower().replace("_", "-")
    return folded == PROJECT or difflib.SequenceMatcher(None, folded, PROJECT).ratio() >= 0.8


def read_pulumi_config() -> RawConfig:
    """All of this project's keys from the running Pulumi program (or from mocks in tests).

    Pulumi hands object values over as JSON text; they are decoded so pydantic sees the same
    structures a stack file holds.
    """
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    decoded = {key: _decode(value) for key, value in merged.items()}
    return split_project_keys(decoded, is_secret=lambda _v: False)[0], frozenset(
        key.partition(":")[2]
        for key in merged
        if key.startswith(f"{PROJECT}:") and runtime_config.is_config_secret(key)
    )


def _decode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
