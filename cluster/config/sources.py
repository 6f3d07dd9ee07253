"""Where raw stack values come from: a stack YAML file on disk, or the running Pulumi program.

Both return the same shape, `(values, secret_keys)` with the project prefix stripped, so `load_config`
validates a file read by `python -m cluster render` exactly as it validates `pulumi up`.
"""

from __future__ import annotations

import json
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


def read_stack_file(path: Path) -> RawConfig:
    """Read a Pulumi stack file (or a YAML file in the same shape). Encrypted values count as secrets."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "file not found; create it or pass --config FILE.")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), f"is not valid YAML: {exc}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError([Problem(str(path), "expected a mapping with a `config:` mapping inside.")])
    return split_project_keys(document.get("config") or {}, is_secret=_is_encrypted)


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
            continue  # other providers' settings (docker:host, ...) are theirs to check
        values[key] = value
        if is_secret(value):
            secrets.add(key)
    if problems:
        raise ConfigError(problems)
    return values, frozenset(secrets)


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
