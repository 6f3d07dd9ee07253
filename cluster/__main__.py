"""`python -m cluster`: the cluster's files and plan without Docker or Pulumi.

python -m cluster render --stack dev --out build/rendered
python -m cluster render --config my-cluster.yaml --out /tmp/rendered
python -m cluster provision --stack dev [--check | --rebalance]
python -m cluster local up --dir /tmp/c1 | local down --dir /tmp/c1
python -m cluster ca --stack dev [--out ca.crt] [--service-file pg_service.conf]
python -m cluster status --stack dev | --harness /tmp/c1 [--json] [--watch 2]
python -m cluster backup create|point|list|check --harness /tmp/c1 | --stack dev
python -m cluster restore --harness /tmp/c1 --to-point NAME --target-harness /tmp/c2
python -m cluster restore --harness /tmp/c1 --to-point NAME --in-place [--yes]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cluster.backup.cli import add_parsers as add_backup
from cluster.client_cli import add_parser as add_ca
from cluster.config import load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.errors import at_the_edge
from cluster.local.cli import add_parser as add_local
from cluster.plan import Plan, build_plan, group_role
from cluster.provision.cli import add_parser as add_provision
from cluster.render import etcd_command, image_spec, render_files
from cluster.status.cli import add_parser as add_status

REDACTED = "REDACTED"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return at_the_edge(args.command, lambda: args.handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = commands.add_parser("render", help="write every rendered file and plan.json into a directory")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read Pulumi.<STACK>.yaml at the project root")
    source.add_argument("--config", type=Path, help="read a YAML file shaped like a stack file")
    render.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    render.set_defaults(handler=_render)
    add_provision(commands)
    add_local(commands)
    add_ca(commands)
    add_status(commands)
    add_backup(commands)
    return parser


def _render(args: argparse.Namespace) -> int:
    path = args.config if args.config else stack_file(args.stack)
    raw, secret_keys = read_stack_file(path)
    loaded = load_config(raw, secret_keys)
    plan = build_plan(loaded.config)
    files = render_files(plan)
    files["plan.json"] = json.dumps(plan_document(plan, sorted(loaded.supplied_passwords)), indent=2) + "\n"
    for relative, text in files.items():
        target = args.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"Rendered {len(files)} files for {path.name} into {args.out}")
    return 0


def plan_document(plan: Plan, supplied_passwords: list[str]) -> dict[str, Any]:
    """The topology and the DSNs the stack would export, passwords redacted."""
    config = plan.config
    summaries = {str(s["name"]): s for s in plan.node_summaries()}
    return {
        "name": config.name,
        "image": image_spec(plan).name,
        "network": {"name": plan.network, "subnet": str(config.network.subnet)},
        "groups": [
            {
                "group": group_id,
                "role": group_role(group_id),
                "synchronous": plan.synchronous(group_id),
                "members": [
                    {
                        **summaries[m.name],
                        "address": m.postgres.address,
                        "volume": m.volume,
                    }
                    for m in members
                ],
            }
            for group_id, members in enumerate(plan.groups)
        ],
        "etcd": [
            {
                "name": e.name,
                "client": e.client.address,
                "volume": e.volume,
                "command": etcd_command(plan, e, binary="/usr/local/bin/etcd"),
            }
            for e in plan.etcd
        ],
        "haproxy": {"name": plan.balancer.name, "published": plan.balancer.published},
        "outputs": {
            **{out.name: plan.dsn(out.listener, REDACTED, plan.user(out.credential)) for out in plan.dsn_outputs()},
            "haproxy_stats_url": plan.stats_url,
        },
        "passwords": {"supplied": supplied_passwords, "generated on `pulumi up`": "the rest"},
    }


if __name__ == "__main__":
    sys.exit(main())
