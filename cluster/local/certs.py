"""The harness's certificates: the product's CA and per-process certificates (cluster/tls.py), on disk.

The CA lives beside the cluster (`plan.client_ca_file`, its key next to it, 0600) and is made once per
directory, so a harness that grows or is taken over by another process issues from the same CA. Each process's
TLS directory gets its files with keys 0600; the harness then hands the tree to the server user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cluster import tls
from cluster.plan import SSLMODE, Plan
from cluster.tls import Authority, Issued


def _write(path: Path, text: str, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600 if secret else 0o644)


def authority(plan: Plan) -> Authority:
    """The directory's CA: read if there, made (and written) the first time."""
    cert_path = Path(plan.client_ca_file)
    key_path = cert_path.with_suffix(".key")
    if cert_path.exists() and key_path.exists():
        return Authority(cert_path.read_text(), key_path.read_text())
    made = tls.new_authority(plan.scope)
    _write(key_path, made.key, secret=True)
    _write(cert_path, made.cert, secret=False)
    return made


def _existing(path: Path) -> Issued | None:
    cert, key = path / tls.CERT_FILE, path / tls.KEY_FILE
    if not (cert.exists() and key.exists()):
        return None
    text = cert.read_text()
    return Issued(text, key.read_text(), tls.cert_hosts(text))


def write_certificates(plan: Plan) -> None:
    """Every identity of the plan gets its files; ones already on disk are kept (same CA, same names)."""
    ca = authority(plan)
    wanted = tls.identities(plan)
    previous = {i.name: found for i in wanted if (found := _existing(Path(i.tls_dir))) is not None}
    issued = tls.reconcile(ca, wanted, previous)
    for identity in wanted:
        for path, (text, secret) in tls.files_for(identity, ca.cert, issued[identity.name]).items():
            _write(Path(path), text, secret)


# ---- measurement switch: the same cluster with TLS optional, to price it (`local up --no-tls`) ------------------
PLAINTEXT = "sslmode=disable"


def without_tls(patroni: dict[str, Any]) -> None:
    """Turn one member's rendered Patroni document into a plaintext-capable one, in place: pg_hba `host` for
    every `hostssl` rule and no `hostnossl` reject; replication and Citus connections without TLS. The servers
    keep their certificates (TLS stays possible); only what dials them changes. Never for a real cluster."""
    postgresql = patroni["postgresql"]
    postgresql["pg_hba"] = [
        rule.replace("hostssl ", "host ", 1) for rule in postgresql["pg_hba"] if not rule.startswith("hostnossl ")
    ]
    postgresql["parameters"]["citus.node_conninfo"] = PLAINTEXT
    for credentials in postgresql["authentication"].values():
        credentials["sslmode"] = "disable"
        credentials.pop("sslrootcert", None)


def plaintext_dsn(dsn: str) -> str:
    return dsn.replace(f"sslmode={SSLMODE}", PLAINTEXT)


def pooler_without_tls(pgbouncer_ini: str) -> str:
    """A rendered pgbouncer.ini that lets clients in without TLS and dials PostgreSQL without it (the same
    measurement switch; the certificates stay configured)."""
    swaps = {"client_tls_sslmode = require": "client_tls_sslmode = allow",
             "server_tls_sslmode = verify-full": "server_tls_sslmode = disable"}
    for old, new in swaps.items():
        pgbouncer_ini = pgbouncer_ini.replace(old, new)
    return pgbouncer_ini
