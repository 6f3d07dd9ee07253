"""SCRAM-SHA-256 verifiers: checked against RFC 7677's worked exchange, so the server accepts what we store."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cluster.provision.scram import saslprep, scram_verifier, verifies

# RFC 7677 section 3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def _parts(verifier: str) -> tuple[bytes, bytes]:
    stored, server = verifier.split("$")[2].split(":")
    return base64.b64decode(stored), base64.b64decode(server)


def test_verifier_checks_the_rfc_7677_client_proof_and_signs_like_its_server() -> None:
    verifier = scram_verifier("pencil", SALT, 4096)
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    stored_key, server_key = _parts(verifier)
    client_signature = hmac.digest(stored_key, AUTH_MESSAGE, "sha256")
    client_key = bytes(a ^ b for a, b in zip(CLIENT_PROOF, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key  # what the server checks on login
    assert hmac.digest(server_key, AUTH_MESSAGE, "sha256") == SERVER_SIGNATURE


def test_fresh_salts_and_verification_without_the_password_on_the_wire() -> None:
    a, b = scram_verifier("correct horse battery"), scram_verifier("correct horse battery")
    assert a != b and "correct horse" not in a
    assert verifies(a, "correct horse battery") and verifies(b, "correct horse battery")
    assert not verifies(a, "wrong") and not verifies("md5abc", "x") and not verifies(None, "x")


def test_saslprep_maps_like_postgresql() -> None:
    assert saslprep("pencil") == b"pencil"
    assert saslprep("I\u00adX") == b"IX"  # soft hyphen maps to nothing
    assert saslprep("a\u00a0b") == b"a b"  # non-ASCII space maps to space
    assert saslprep("\u2168") == b"IX"  # NFKC
    assert saslprep("a\u0007\u00e9") == "a\u0007\u00e9".encode()  # prohibited: the raw bytes are used
