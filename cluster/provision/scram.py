"""SCRAM-SHA-256 verifiers computed here, so a role's password never travels to the server (or its log).

What libpq's PQencryptPasswordConn does (RFC 5802 / RFC 7677, PostgreSQL's pg_authid format):
SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations); StoredKey = SHA-256(HMAC(
SaltedPassword, "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key"); stored as
`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64). A verifier lets the server check a
login; it does not let anyone log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata

ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SALT_BYTES = 16  # libpq's SCRAM_DEFAULT_SALT_LEN
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep as PostgreSQL applies it: on any prohibited character the password is used as its raw
    UTF-8 bytes instead (PostgreSQL's pg_saslprep returns SASLPREP_INVALID_UTF8/PROHIBITED and the caller
    falls back), so both sides hash the same bytes."""
    if password.isascii():
        return password.encode()  # pg_saslprep returns pure ASCII unchanged
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    mapped = unicodedata.normalize("NFKC", mapped)
    if not mapped or any(_prohibited(c) for c in mapped) or not _bidi_ok(mapped):
        return password.encode()
    return mapped.encode()


def _prohibited(c: str) -> bool:
    return any(check(c) for check in (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
        stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9, stringprep.in_table_a1,
    ))


def _bidi_ok(text: str) -> bool:
    """RFC 3454 section 6: RandALCat text must not mix in LCat and must start and end with RandALCat."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return True
    return (not any(stringprep.in_table_d2(c) for c in text)
            and stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1]))


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256")


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The pg_authid.rolpassword value for `password` (a fresh random salt unless one is given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored, server = _keys(password, salt, iterations)
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def verifies(verifier: str | None, password: str) -> bool:
    """True when `verifier` (as stored in pg_authid) accepts `password`: lets provisioning skip a rotation that
    is already done, without ever sending the password."""
    match = _VERIFIER.match(verifier or "")
    if match is None:
        return False
    iterations, salt = int(match.group(1)), base64.b64decode(match.group(2))
    return hmac.compare_digest(scram_verifier(password, salt, iterations), verifier or "")


def pooled_verifier(password: str, role: str, pooler_password: str) -> str:
    """The verifier a role that PgBouncer lists in its auth file must have on the server too: PgBouncer reuses a
    client's SCRAM keys to log in to PostgreSQL only when its own verifier and the server's are identical (same
    salt). The salt is derived from the role and the cluster's secret pooler password, so provisioning (which sets
    it on the server) and the auth file (rendered for PgBouncer) agree without ever exchanging a verifier, and it
    is unguessable without that secret."""
    salt = hashlib.sha256(f"citus-cluster pgbouncer\0{role}\0{pooler_password}".encode()).digest()[:SALT_BYTES]
    return scram_verifier(password, salt)
