"""The stack's certificates as a Pulumi dynamic resource: made once, kept in the state, reissued only on change.

Why a dynamic provider rather than generating in the program: a program cannot read what it generated on the
previous run, so it would make a new CA and new keys on every `pulumi up`, and every container (whose uploads
carry them) would be replaced each time. A resource keeps its outputs: `create` makes the CA and one
certificate per identity; `update` (the plan's SANs changed: members added or removed, a new published address)
keeps the CA and every unchanged certificate and issues only what changed. The CA key and the private keys are
secret outputs (encrypted in the state); pulumi-tls would do the same at the cost of another provider plugin.

Like the other dynamic providers it is pickled (dill): it holds no state and imports inside each call.
"""

from __future__ import annotations

from typing import Any

from pulumi import Output, ResourceOptions
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

SECRET_OUTPUTS = ["ca_key", "leaves"]


def identity_props(identities: Any) -> list[dict[str, Any]]:
    """The resource's input: each identity as plain data (name, TLS directory, SANs)."""
    return [{"name": i.name, "tls_dir": i.tls_dir, "hosts": list(i.hosts)} for i in identities]


def _identities(props: dict[str, Any]) -> tuple:
    from cluster.tls import Identity

    return tuple(Identity(i["name"], i["tls_dir"], tuple(i["hosts"])) for i in props["identities"])


def _outs(props: dict[str, Any], authority: Any, issued: dict[str, Any]) -> dict[str, Any]:
    leaves = {name: leaf.to_dict() for name, leaf in issued.items()}
    return {**props, "ca_cert": authority.cert, "ca_key": authority.key, "leaves": leaves}


class CertificatesProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        from cluster import tls

        authority = tls.new_authority(props["scope"])
        issued = tls.reconcile(authority, _identities(props))
        return CreateResult(id_=f"{props['scope']}-certificates", outs=_outs(props, authority, issued))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new scope is another cluster: a new CA. Changed identities: reissue what changed, in place."""
        replaces = ["scope"] if olds.get("scope") != news.get("scope") else []
        changed = replaces or olds.get("identities") != news.get("identities")
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from cluster import tls

        authority = tls.Authority(olds["ca_cert"], olds["ca_key"])
        previous = {name: tls.Issued.from_dict(leaf) for name, leaf in olds.get("leaves", {}).items()}
        issued = tls.reconcile(authority, _identities(news), previous)
        return UpdateResult(outs=_outs(news, authority, issued))


class Certificates(Resource, module="citus-cluster", name="Certificates"):
    """The cluster CA (`ca_cert`, public; `ca_key`, secret) and a certificate + key per process (`leaves`)."""

    ca_cert: Output[str]
    ca_key: Output[str]
    leaves: Output[dict]

    def __init__(self, name: str, props: dict[str, Any], opts: ResourceOptions | None = None) -> None:
        secret = ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        outputs = {"ca_cert": None, "ca_key": None, "leaves": None}
        super().__init__(CertificatesProvider(), name, {**outputs, **props}, ResourceOptions.merge(opts, secret))
