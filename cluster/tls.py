"""The cluster's certificates: one CA per stack, one certificate per process, derived from the plan.

Every process that listens (PostgreSQL + Patroni REST of each member, each etcd member, HAProxy) gets a
certificate whose subject alternative names are exactly the names it is reached by according to the plan:
its container/host name, every endpoint host of it, the address clients on the user's machine dial
(`plan.client_host`) and loopback (health checks inside a container, the local harness). Nothing is named here
by hand, so a layout that gives members their own addresses gets matching certificates without a change.

Each certificate is good for both ends of a TLS link (serverAuth + clientAuth): the same key lets a Patroni
member serve its REST API and authenticate to etcd, and an etcd member serve clients and dial its peers.

Generating keys is random by nature; everything else here is a function of its inputs, and nothing touches the
disk: callers (the Pulumi dynamic provider, the local harness) decide where the PEM text goes.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cluster.plan import Plan

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=1825)  # renewal: re-create the Certificates resource (see README)
CLOCK_SKEW = datetime.timedelta(hours=1)  # a member whose clock runs a little behind still accepts a new cert

CA_FILE = "ca.crt"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
PEM_FILE = "server.pem"  # certificate + key in one file, the form HAProxy's `crt` wants


@dataclass(frozen=True)
class TlsPaths:
    """Where one process finds its TLS files: the directory comes from the plan (`tls_dir`)."""

    directory: str

    @property
    def ca(self) -> str:
        return f"{self.directory}/{CA_FILE}"

    @property
    def cert(self) -> str:
        return f"{self.directory}/{CERT_FILE}"

    @property
    def key(self) -> str:
        return f"{self.directory}/{KEY_FILE}"

    @property
    def pem(self) -> str:
        return f"{self.directory}/{PEM_FILE}"


@dataclass(frozen=True)
class Identity:
    """One process that needs a certificate: its name (the certificate's CN), where its files go, its SANs."""

    name: str
    tls_dir: str
    hosts: tuple[str, ...]

    @property
    def paths(self) -> TlsPaths:
        return TlsPaths(self.tls_dir)


@dataclass(frozen=True)
class Issued:
    """A leaf certificate and its key (PEM), with the SANs it was issued for (to know when to reissue)."""

    cert: str
    key: str
    hosts: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "hosts": list(self.hosts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Issued:
        return cls(cert=str(data["cert"]), key=str(data["key"]), hosts=tuple(data["hosts"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Authority:
    cert: str
    key: str


def _unique(hosts: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(h for h in hosts if h))


def identities(plan: Plan) -> tuple[Identity, ...]:
    """Every process of the plan that serves TLS, with the names it is reached by."""
    everywhere = [plan.client_host, "127.0.0.1", "localhost"]
    found = [
        Identity(m.name, m.tls_dir, _unique([m.name, m.postgres.host, m.api.host, *everywhere])) for m in plan.members
    ]
    found += [
        Identity(e.name, e.tls_dir, _unique([e.name, e.client.host, e.peer.host, *everywhere])) for e in plan.etcd
    ]
    b = plan.balancer
    listeners = [b.read_write, b.read_only, b.stats, *([b.any_node] if b.any_node else [])]
    found.append(Identity(b.name, b.tls_dir, _unique([b.name, *(ep.host for ep in listeners), *everywhere])))
    if plan.layout == "docker" and plan.config.monitoring.enabled:
        # Prometheus serves its UI over HTTPS and shows this certificate to etcd as its client certificate.
        name = plan.prometheus_name
        found.append(Identity(name, plan.prometheus_tls_dir, _unique([name, *everywhere])))
    return tuple(found)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def new_authority(scope: str, now: datetime.datetime | None = None) -> Authority:
    """A fresh CA for cluster `scope` (P-256: small, fast, understood by libpq, Go's etcd, HAProxy, Python)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{scope} cluster CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))


def issue(authority: Authority, identity: Identity, now: datetime.datetime | None = None) -> Issued:
    """A leaf certificate for `identity`, signed by `authority`, valid for serving and for client auth."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_cert = x509.load_pem_x509_certificate(authority.cert.encode())
    ca_key = serialization.load_pem_private_key(authority.key.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(identity.name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_agreement=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in identity.hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key), identity.hosts)


def reconcile(
    authority: Authority, wanted: tuple[Identity, ...], previous: Mapping[str, Issued] | None = None
) -> dict[str, Issued]:
    """The leaf certificates `wanted` needs: a previous one is kept while its SANs still match (so a re-run
    changes nothing and replaces no container); a new or changed identity gets a new one; a gone one is dropped."""
    previous = previous or {}
    return {
        i.name: previous[i.name] if i.name in previous and previous[i.name].hosts == i.hosts else issue(authority, i)
        for i in wanted
    }


def file_secrecy(identity: Identity) -> dict[str, bool]:
    """The files of one process's TLS directory: path -> secret? Keys are secret, certificates are not."""
    paths = identity.paths
    return {paths.ca: False, paths.cert: False, paths.key: True, paths.pem: True}


def files_for(identity: Identity, authority_cert: str, issued: Issued) -> dict[str, tuple[str, bool]]:
    """What one process's TLS directory holds: path -> (content, secret)."""
    paths = identity.paths
    content = {paths.ca: authority_cert, paths.cert: issued.cert, paths.key: issued.key,
               paths.pem: issued.cert + issued.key}
    return {path: (content[path], secret) for path, secret in file_secrecy(identity).items()}


def cert_hosts(cert_pem: str) -> tuple[str, ...]:
    """The SANs a certificate was issued for, in issue order (what `reconcile` compares against the plan)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return tuple(str(n.value) for n in names)
