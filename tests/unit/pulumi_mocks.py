"""Run the Pulumi program against mocks (no engine, no Docker) and record every resource registration."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.sync_await import _sync_await

from cluster.config.sources import PROJECT


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str]
    retain_on_delete: bool
    provider: str
    alias_types: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False


class EchoMocks(pulumi.runtime.Mocks):
    """Resources echo their inputs as state, with the few computed outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated-{args.name}"
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{args.name}"
        if args.typ.endswith(":Certificates"):  # the real provider's create: real PEM text, no engine needed
            from cluster.provision.certificates import CertificatesProvider

            state = CertificatesProvider().create(state).outs
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=inputs,
                    dependencies=list(request.dependencies),
                    retain_on_delete=request.retainOnDelete,
                    provider=request.provider,
                    alias_types=[a.spec.type for a in request.aliases if a.HasField("spec")],
                    ignore_changes=list(request.ignoreChanges),
                    delete_before_replace=request.deleteBeforeReplace,
                )
            )
        return response


@dataclass
class Deployment:
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, short: str) -> list[Registration]:
        """Registrations whose type ends with `short`, e.g. 'Container' or 'Volume'."""
        return [r for r in self.registrations if r.type.split(":")[-1] == short]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)


def deploy(config: dict[str, Any], build_dir: Path, secrets: dict[str, str] | None = None) -> Deployment:
    """Run cluster.stack.run() under mocks with `config` (keys without project prefix) as stack config."""
    from cluster import stack

    # Pulumi's mocks run on the main thread's current event loop; an asyncio.run() earlier in the same process
    # (the PgBouncer benchmark's clients, in the integration tests make test runs first) leaves none behind.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = EchoMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False, monitor=monitor)
    values = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    values.update({f"{PROJECT}:{k}": v for k, v in (secrets or {}).items()})
    pulumi.runtime.set_all_config(values, secret_keys=[f"{PROJECT}:{k}" for k in (secrets or {})])
    deployment = Deployment(monitor.registrations)
    original_build_dir = stack.build_dir
    stack.build_dir = lambda _name: build_dir  # type: ignore[assignment]
    try:
        cluster = _run(stack.run)
        for name, output in cluster.outputs.items():
            deployment.outputs[name] = _sync_await(output.future())
            if _sync_await(output.is_secret()):
                deployment.secret_outputs.add(name)
    finally:
        stack.build_dir = original_build_dir
        pulumi.runtime.set_all_config({}, secret_keys=[])
    return deployment


def _run(program: Any) -> Any:
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def body() -> None:
        result["value"] = program()

    body()
    return result["value"]
