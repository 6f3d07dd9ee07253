"""Patroni's (and etcd's) REST API as JSON: the one reader every part of the product uses.

Both speak HTTPS only. A reader passes the cluster CA (`ca_file`): the server's chain and host name are
verified, never skipped; etcd also wants a client certificate of the cluster CA (`client_cert`).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Any

LEADER_ROLES = ("primary", "master")


@lru_cache(maxsize=32)
def tls_context(ca_file: str | None, client_cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A verifying client context for the cluster CA (None: the system's CAs), with a client cert if given."""
    context = ssl.create_default_context(cafile=ca_file)
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    return context


def rest_json(
    url: str, timeout: float = 2.0, ca_file: str | None = None, client_cert: tuple[str, str] | None = None
) -> dict[str, Any]:
    """GET a REST endpoint's JSON (Patroni, etcd). Patroni answers a role check the member fails (/primary on a
    replica) with 503 and the same JSON body, so that body is returned rather than raised."""
    context = tls_context(ca_file, client_cert) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def role(state: dict[str, Any]) -> str | None:
    """The member's role from Patroni's JSON; older Patroni says "master" for "primary"."""
    found = state.get("role")
    return "primary" if found in LEADER_ROLES else found


def basic_auth(request: urllib.request.Request, user: str, password: str) -> urllib.request.Request:
    """`request` with HTTP basic credentials (Patroni's unsafe endpoints, HAProxy's stats page)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    return request


def rest_send(url: str, body: dict[str, Any], auth: tuple[str, str], method: str = "POST",
              timeout: float = 10.0, ca_file: str | None = None) -> dict[str, Any]:
    """An authenticated call to one of Patroni's unsafe endpoints (PATCH /config, POST /switchover, ...)."""
    request = basic_auth(urllib.request.Request(url, data=json.dumps(body).encode(), method=method), *auth)
    request.add_header("Content-Type", "application/json")
    context = tls_context(ca_file) if url.startswith("https:") else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        text = response.read()
    try:
        return json.loads(text or b"{}")
    except ValueError:
        return {"answer": text.decode(errors="replace")}


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0, ca_file: str | None = None,
              client_cert: tuple[str, str] | None = None) -> dict[str, Any]:
    """POST JSON to a REST API that authenticates by client certificate (etcd's JSON gateway, /v3/kv/...)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    context = tls_context(ca_file, client_cert) if url.startswith("https:") else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return json.loads(response.read() or b"{}")


def basic_status(url: str, user: str, password: str, ca_file: str | None = None, timeout: float = 5.0) -> int:
    """The HTTP status a GET of `url` with basic auth answers (HAProxy's stats page: 200, or 401 refused)."""
    context = tls_context(ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(basic_auth(urllib.request.Request(url), user, password), timeout=timeout,
                                    context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
