"""`python -m cluster ca`: the cluster CA for clients, and optionally a libpq service file + password file.

python -m cluster ca --stack dev                       # CA where the stack's DSNs expect it (sslrootcert)
python -m cluster ca --harness /tmp/c1 --out ca.crt    # a local cluster's CA, anywhere
python -m cluster ca --stack dev --out ca.crt --service-file pg_service.conf [--passfile pgpass]
    then: PGSERVICEFILE=pg_service.conf psql service=citus-admin   (no password or DSN on the command line)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.config import load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.errors import UsageError
from cluster.plan import Plan, build_plan
from cluster.render.client import render_passfile, render_service_file, service_name


@dataclass(frozen=True)
class ClientMaterial:
    plan: Plan
    ca_pem: str
    passwords: dict[str, str]  # credential name -> password, for the DSN outputs' credentials


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("ca", help="write the cluster CA (and a libpq service file) for clients",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed Pulumi stack (reads its ca_cert and DSN outputs)")
    where.add_argument("--harness", type=Path, metavar="DIR", help="a local cluster's directory")
    parser.add_argument("--out", type=Path, help="where to write the CA (default: the path the DSNs name)")
    parser.add_argument("--service-file", type=Path, help="also write a pg_service.conf with one service per DSN")
    parser.add_argument("--passfile", type=Path, help="the password file it uses (default: pgpass beside it)")
    parser.set_defaults(handler=run)


def stack_material(stack: str) -> ClientMaterial:
    from cluster.provision.target import password_of, pulumi_outputs

    plan = build_plan(load_config(*read_stack_file(stack_file(stack))).config)
    outputs = pulumi_outputs(stack)
    needed = ["ca_cert", *(o.name for o in plan.dsn_outputs())]
    if missing := [k for k in needed if k not in outputs]:
        raise UsageError(f"stack {stack} has no {', '.join(missing)} output: run `make up` for it first")
    passwords = {o.credential: password_of(outputs[o.name]) for o in plan.dsn_outputs()}
    return ClientMaterial(plan, outputs["ca_cert"], passwords)


def harness_material(directory: Path) -> ClientMaterial:
    from cluster.local.harness import Harness

    harness = Harness.load(directory)
    passwords = {o.credential: getattr(harness.passwords, o.credential) for o in harness.plan.dsn_outputs()}
    return ClientMaterial(harness.plan, Path(harness.ca_file).read_text(), passwords)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=mode)
    os.chmod(path, mode)  # before the text goes in: a password file is never readable by others
    path.write_text(text)


def run(args: argparse.Namespace) -> int:
    material = stack_material(args.stack) if args.stack else harness_material(args.harness)
    ca_path = (args.out or Path(material.plan.client_ca_file)).resolve()
    _write(ca_path, material.ca_pem, 0o644)
    print(f"CA of cluster {material.plan.scope} written to {ca_path}")
    if args.service_file:
        service_file = args.service_file.resolve()
        passfile = (args.passfile or service_file.parent / "pgpass").resolve()
        _write(passfile, render_passfile(material.plan, material.passwords), 0o600)
        _write(service_file, render_service_file(material.plan, str(ca_path), str(passfile)), 0o644)
        names = [service_name(material.plan, o) for o in material.plan.dsn_outputs()]
        print(f"services {', '.join(names)} in {service_file} (passwords in {passfile}, 0600); connect with:\n"
              f"  PGSERVICEFILE={service_file} psql service={names[0]}")
    return 0
