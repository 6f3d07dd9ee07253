"""Pulumi dynamic providers: thin wrappers that call the provisioning module.

They run inside Pulumi's language host on the user's machine and reach the cluster through published ports
only. They are pickled by Pulumi (dill), so they hold no clients and no modules: everything is imported and
connected inside each call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pulumi import Alias, Output, ResourceOptions
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult


def _target(props: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The cluster to talk to; its CA is put where the target's TLS checks look for it before anything dials."""
    from cluster.provision.target import ClusterTarget, install_ca

    target = ClusterTarget.from_dict(props["target"])
    if props.get("ca_cert") and target.ca_file:
        install_ca(target.ca_file, props["ca_cert"])
    return target


def _migrations(props: dict[str, Any]) -> list:
    from cluster.provision.migrations import Migration

    return [Migration.from_dict(m) for m in props.get("migrations", [])]


def _groups(props: dict[str, Any]) -> set[int]:
    return {int(m["group"]) for m in props["target"]["members"] if int(m["group"]) != 0}


def _checksums(props: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["checksum"] for m in props.get("migrations", [])}


def _delivery_due(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """The members' secret files changed (a rotation), or a container was replaced (created with the files of its
    first creation, the stack ignoring their later changes): provisioning delivers them into the running members.
    A member that is new has its files from its creation; one that left needs none."""
    old_containers, new_containers = olds.get("containers") or {}, news.get("containers") or {}
    kept = set(old_containers) & set(new_containers)
    replaced = any(old_containers[m] != new_containers[m] for m in kept)
    return replaced or _secrets_of(olds, kept) != _secrets_of(news, kept)


def _secrets_of(props: dict[str, Any], members: set[str]) -> list[dict[str, str]]:
    return sorted((s for s in props.get("secrets") or [] if s["member"] in members), key=lambda s: s["member"])


def _stats_rotated(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """A new stats password (not the first one a stack from before gets): the courier container has been
    replaced with it; `make up` returns once HAProxy's launcher has reloaded it."""
    return bool(olds.get("stats")) and bool(news.get("stats")) and olds["stats"] != news["stats"]


class ProvisioningProvider(ResourceProvider):
    """Health gate, Citus registration, extensions and roles, schema, rebalance: on create and update."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        from cluster.provision import provision

        result = provision(_target(props), _migrations(props))
        return CreateResult(id_="citus-provisioning", outs={**props, **result.outputs()})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = []
        # Every part of the target changes what provisioning does: members, the app role's name and password,
        # the superuser and replication passwords (rotation), the schema settings (refused if the built schema
        # cannot take them), Patroni's dynamic configuration.
        if olds["target"] != news["target"]:
            changed.append("target")
        if _checksums(olds) != _checksums(news):
            changed.append("migrations")
        if _delivery_due(olds, news):
            changed.append("secrets")
        if olds.get("stats") != news.get("stats"):
            changed.append("stats")  # provisioning waits for HAProxy to take it (_stats_rotated)
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from cluster.provision import drain, provision

        target = _target(news)
        leaving = sorted(_groups(olds) - _groups(news))
        if leaving:
            # Shards leave before the members do: Pulumi deletes the removed containers after this update.
            drain(_target(olds), leaving)
        arriving = bool(_groups(news) - _groups(olds))
        before = _target(olds)
        previous = [before.superuser_password]  # the password to log in with while rotating it

        def provision_step():  # type: ignore[no-untyped-def]
            # Patroni still takes the REST password it had until the delivered file is reloaded.
            during = replace(target, rest_password=before.rest_password)
            return provision(during, _migrations(news), rebalance=arriving, previous_superuser_passwords=previous)

        if _delivery_due(olds, news):
            from cluster.provision import delivery
            from cluster.render.secret_files import MemberSecrets

            secrets = [MemberSecrets.from_dict(s) for s in news["secrets"]]
            result = delivery.rotate(target, secrets, previous, provision_step)
        else:
            result = provision(target, _migrations(news), rebalance=arriving, previous_superuser_passwords=previous)
        if _stats_rotated(olds, news) and target.stats_url:
            from cluster.provision import delivery

            delivery.wait_stats_password(target.stats_url, olds["stats"], news["stats"], target.ca_file)
        return UpdateResult(outs={**news, **result.outputs()})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Destroying the cluster removes its containers and volumes; no SQL is worth running first."""


class WorkerGroupProvider(ResourceProvider):
    """One per worker group. The group's containers depend on it, so Pulumi deletes it *after* them: the
    moment to unregister the (already drained) group from pg_dist_node for good."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"worker-group-{props['group']}", outs=props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """On scale-in. On a whole-cluster destroy the coordinator is gone by now and retire() does nothing."""
        from cluster.provision import retire

        retire(_target(props), [int(props["group"])])


# Until 0.1 these resources were registered under Pulumi's generic dynamic type; the alias keeps existing stacks'
# resources (a changed type would otherwise mean delete + create, and deleting a WorkerGroup unregisters it).
_GENERIC_TYPE = [Alias(type_="pulumi-python:dynamic:Resource")]


class Provisioning(Resource, module="citus-cluster", name="Provisioning"):
    """The cluster's provisioning state: registered nodes, applied migrations, shards per node."""

    citus_version: Output[str]
    nodes: Output[list]
    applied_migrations: Output[list]
    shard_counts: Output[dict]

    def __init__(self, name: str, props: dict[str, Any], opts: ResourceOptions | None = None) -> None:
        outputs = {"citus_version": None, "nodes": None, "applied_migrations": None, "shard_counts": None}
        super().__init__(ProvisioningProvider(), name, {**outputs, **props}, _with_alias(opts))


class WorkerGroup(Resource, module="citus-cluster", name="WorkerGroup"):
    """A worker group's registration; deleted after the group's containers (see WorkerGroupProvider)."""

    def __init__(self, name: str, props: dict[str, Any], opts: ResourceOptions | None = None) -> None:
        super().__init__(WorkerGroupProvider(), name, props, _with_alias(opts))


def _with_alias(opts: ResourceOptions | None) -> ResourceOptions:
    return ResourceOptions.merge(opts or ResourceOptions(), ResourceOptions(aliases=_GENERIC_TYPE))
