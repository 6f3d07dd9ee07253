"""Patroni's dynamic configuration (DCS) kept as the plan declares it on a running cluster.

`bootstrap.dcs` in each member's file is read once, when its group bootstraps; afterwards the DCS copy rules,
and the settings Patroni takes only from there (max_connections, max_wal_senders, ...) would never change again.
So provisioning PATCHes each group's /config with the difference (what `patronictl edit-config` does by hand)
and reports the members that need a restart for a setting to apply.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cluster.config.models import DCS_PARAMETERS
from cluster.plan import RESTAPI_USER
from cluster.provision.rest import rest_json, rest_send
from cluster.provision.target import ClusterTarget
from cluster.render.patroni import LOOP_WAIT

log = logging.getLogger("cluster.provision")


def config_patch(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch taking `current` to `wanted`: changed keys, plus null for DCS-only PostgreSQL
    settings the plan no longer sets (other keys someone added by hand are left alone)."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        here = current.get(key)
        if isinstance(value, dict) and isinstance(here, dict):
            sub = config_patch(here, value)
            if sub:
                patch[key] = sub
        elif here != value and not _same(here, value):
            patch[key] = value
    return patch


def _same(here: Any, value: Any) -> bool:
    """Patroni stores what it was given; compare numbers and on/off texts as PostgreSQL would."""
    return str(here).strip().lower() == str(value).strip().lower()


def dropped_parameters(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, None]:
    """DCS-only settings present in the DCS but no longer declared: null removes them (back to the default)."""
    have = (current.get("postgresql") or {}).get("parameters") or {}
    want = (wanted.get("postgresql") or {}).get("parameters") or {}
    return {name: None for name in have if name.lower() in DCS_PARAMETERS and name.lower() not in want}


def sync(target: ClusterTarget, leaders: dict[int, str], settle: float = 2 * LOOP_WAIT + 1) -> list[str]:
    """PATCH each group's /config to the declared DCS config; returns the members left pending a restart."""
    if not target.rest_password or not target.dcs:
        log.info("Patroni's dynamic configuration not synced: the target carries no REST API password")
        return []
    patched = False
    for member in (m for m in target.members if leaders.get(m.group) == m.name):
        wanted = target.dcs.get(str(member.group))
        if wanted is None:
            continue
        current = rest_json(f"{member.patroni_url}/config", timeout=5, ca_file=target.ca_file)
        patch = config_patch(current, wanted)
        dropped = dropped_parameters(current, wanted)
        if dropped:
            patch.setdefault("postgresql", {}).setdefault("parameters", {}).update(dropped)
        if patch:
            log.info("group %s: Patroni dynamic configuration: %s", member.group, sorted(_paths(patch)))
            rest_send(f"{member.patroni_url}/config", patch, (RESTAPI_USER, target.rest_password), method="PATCH",
                      ca_file=target.ca_file)
            patched = True
    if patched:
        time.sleep(settle)  # Patroni applies the new config on its next loop
    return [m.name for m in target.members
            if rest_json(f"{m.patroni_url}/patroni", timeout=5, ca_file=target.ca_file).get("pending_restart")]


def _paths(patch: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in patch.items():
        path = f"{prefix}{key}"
        out += _paths(value, path + ".") if isinstance(value, dict) else [path]
    return out
