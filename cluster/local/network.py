"""The namespaced harness's network: one namespace per host on a bridge, and cutting hosts off it.

The plan (NamespaceLayout -> Plan.host_network) says which hosts exist, their addresses and the names of their
namespace, veth and bridge; this module only turns that into `ip` and `nft` commands. The command lists are
built by pure functions (tested without root); `create`, `destroy`, `cut` and `heal` run them.

Safety: before the bridge gets its address, the harness's subnet is routed `unreachable` (a higher metric than
the bridge's own route), so no packet for the range ever leaves the machine, bridge or not. `destroy` removes
everything whose name carries the harness's tag, so it also sweeps hosts a shrunken plan no longer lists, and
it can be run again at any time (after a failed test, from the state file) without error.

Cuts are nftables DROP rules inside the victim's namespace, in both directions, all or nothing per peer (this
machine has no `tc netem`): established connections hang as they would behind a dead switch port, they are
not reset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from ipaddress import IPv4Network

from cluster.local.processes import HarnessError
from cluster.plan import NAMESPACE_RANGE, Host, HostNetwork

GUARD_METRIC = 4242  # above the bridge's connected route (metric 0), so it only catches what the bridge does not
NFT_TABLE = "cc_partition"
IFACE = "eth0"  # each host's end of its veth pair, inside its namespace


class NetworkError(HarnessError):
    """An `ip`/`nft` command failed; the message names the command and what it printed."""


# ---- pure: what to run ----------------------------------------------------------------------------------------
def create_commands(net: HostNetwork, existing: Iterable[str] = ()) -> list[list[str]]:
    """Commands that bring `net` up; hosts whose namespace is in `existing` are left as they are."""
    prefix = IPv4Network(net.subnet).prefixlen
    commands = [
        ["ip", "route", "replace", "unreachable", net.guard, "metric", str(GUARD_METRIC)],
        ["ip", "link", "add", net.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{net.gateway}/{prefix}", "dev", net.bridge],
        ["ip", "link", "set", net.bridge, "up"],
    ] if net.bridge not in existing else []
    for host in net.hosts:
        if host.namespace in existing:
            continue
        peer = f"{host.veth}p"
        commands += [
            ["ip", "netns", "add", host.namespace],
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer],
            ["ip", "link", "set", peer, "netns", host.namespace],
            ["ip", "-n", host.namespace, "link", "set", peer, "name", IFACE],
            ["ip", "-n", host.namespace, "addr", "add", f"{host.address}/{prefix}", "dev", IFACE],
            ["ip", "-n", host.namespace, "link", "set", IFACE, "up"],
            ["ip", "-n", host.namespace, "link", "set", "lo", "up"],
            ["ip", "link", "set", host.veth, "master", net.bridge, "up"],
        ]
    return commands


def forward_rule(net: HostNetwork) -> list[str]:
    """iptables arguments that let bridged traffic pass where dockerd set FORWARD to DROP (br_netfilter)."""
    return ["FORWARD", "-i", net.bridge, "-o", net.bridge, "-j", "ACCEPT"]


def cut_script(peers: Iterable[str] | None) -> str:
    """An nft script that replaces the host's cut: DROP to and from `peers`, or everything but loopback (None)."""
    if peers is None:
        match_in, match_out = f'iifname "{IFACE}"', f'oifname "{IFACE}"'
    else:
        addresses = sorted(set(peers))
        if not addresses:
            raise NetworkError("a selective cut needs at least one peer address")
        listed = ", ".join(addresses)
        match_in, match_out = f"ip saddr {{ {listed} }}", f"ip daddr {{ {listed} }}"
    return "\n".join([
        f"table inet {NFT_TABLE}",  # declared first, so the delete below never fails
        f"delete table inet {NFT_TABLE}",
        f"table inet {NFT_TABLE} {{",
        f"  chain input {{ type filter hook input priority -10; policy accept; {match_in} drop; }}",
        f"  chain output {{ type filter hook output priority -10; policy accept; {match_out} drop; }}",
        "}",
        "",
    ])


def heal_script() -> str:
    return f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"


def free_subnet(used: str) -> str:
    """The first /24 of NAMESPACE_RANGE that `used` (the output of `ip -4 route show table all`) never mentions."""
    for subnet in NAMESPACE_RANGE.subnets(new_prefix=24):
        if str(subnet.network_address).rsplit(".", 1)[0] + "." not in used:
            return str(subnet)
    raise NetworkError(f"every /24 of {NAMESPACE_RANGE} is in use; run `python -m cluster local down` on old ones")


# ---- I/O --------------------------------------------------------------------------------------------------------
def _run(command: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def require_tools() -> None:
    """Namespaces need root, `ip` (iproute2), `nft` (nftables) and `setpriv`; say what is missing."""
    if os.geteuid() != 0:
        raise NetworkError("the namespaced harness (--namespaces) creates network namespaces and must run as root")
    missing = [tool for tool in ("ip", "nft", "setpriv") if shutil.which(tool) is None]
    if missing:
        raise NetworkError(f"the namespaced harness needs {', '.join(missing)}: install iproute2, nftables and "
                           "util-linux (see .ci/run)")


def pick_subnet() -> str:
    return free_subnet(_run(["ip", "-4", "route", "show", "table", "all"]).stdout)


def namespaces() -> set[str]:
    return {line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()}


def links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in _run(["ip", "-o", "link"]).stdout.splitlines()}


def create(net: HostNetwork) -> None:
    """Bring up the bridge and every host of `net` not up yet (so a grown plan only adds its new hosts)."""
    require_tools()
    for command in create_commands(net, namespaces() | links()):
        _run(command)
    if shutil.which("iptables") and _run(["iptables", "-C", *forward_rule(net)], check=False).returncode != 0:
        _run(["iptables", "-I", *forward_rule(net)])


def destroy(net: HostNetwork) -> None:
    """Remove every namespace, veth, the bridge, the guard route and the forward rule of `net`'s tag.

    Idempotent and thorough: it sweeps by the tag (the bridge's name without 'br'), not by the hosts the plan
    lists now, so hosts of a group removed since are swept too.
    """
    tag = net.bridge.removesuffix("br")
    for namespace in sorted(n for n in namespaces() if n.startswith(f"{tag}-")):
        _run(["ip", "netns", "delete", namespace], check=False)
    for link in sorted(link for link in links() if link.startswith(tag)):
        _run(["ip", "link", "delete", link], check=False)
    _run(["ip", "route", "delete", "unreachable", net.guard, "metric", str(GUARD_METRIC)], check=False)
    if shutil.which("iptables"):
        while _run(["iptables", "-D", *forward_rule(net)], check=False).returncode == 0:
            pass


def leftovers(net: HostNetwork) -> list[str]:
    """Whatever of `net` still exists (empty after destroy): for tests and `cleanup` to check."""
    tag = net.bridge.removesuffix("br")
    found = [f"netns {n}" for n in namespaces() if n.startswith(f"{tag}-")]
    found += [f"link {link}" for link in links() if link.startswith(tag)]
    routes = _run(["ip", "route", "show", "table", "all"]).stdout
    found += [f"route unreachable {net.guard}" for line in routes.splitlines()
              if line.startswith(f"unreachable {net.guard}")]
    return found


def cut(host: Host, peers: Iterable[str] | None = None) -> None:
    """Cut `host` off: from the addresses `peers`, or from everything (None). Replaces any earlier cut."""
    _run(["ip", "netns", "exec", host.namespace, "nft", "-f", "-"], stdin=cut_script(peers))


def heal(host: Host) -> None:
    _run(["ip", "netns", "exec", host.namespace, "nft", "-f", "-"], stdin=heal_script())

