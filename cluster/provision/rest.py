"""Patroni's (and etcd's) REST API as JSON: the one reader every part of the product uses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

LEADER_ROLES = ("primary", "master")


def rest_json(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET a REST endpoint's JSON (Patroni, etcd). Patroni answers a role check the member fails (/primary on a
    replica) with 503 and the same JSON body, so that body is returned rather than raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def role(state: dict[str, Any]) -> str | None:
    """The member's role from Patroni's JSON; older Patroni says "master" for "primary"."""
    found = state.get("role")
    return "primary" if found in LEADER_ROLES else found
