"""A real Prometheus (Debian's 2.42) on the rendered files against a harness, and a reader of the text format."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.local import processes
from cluster.local.harness import Harness, free_ports
from cluster.render.prometheus import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    RULES_FILE,
    SCRAPE_FILE,
    STATS_PASSWORD_FILE,
    render_prometheus,
)
from cluster.tls import TlsPaths


@contextmanager
def running_prometheus(harness: Harness, directory: Path, interval: str | None = "1s") -> Iterator[str]:
    """Prometheus on the harness's rendered scrape config and rules (at drill speed `interval`, or as rendered when
    None), with the files the config names put beside it as a user would: the cluster CA, the stats password, an
    etcd client certificate."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus missing (Debian package prometheus, .ci/run installs it)")
    files = render_prometheus(harness.plan)
    config = yaml.safe_load(files[SCRAPE_FILE])
    if interval is not None:
        config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}  # drill speed, same rules
    (directory / SCRAPE_FILE).write_text(yaml.safe_dump(config))
    (directory / RULES_FILE).write_text(files[RULES_FILE])
    etcd_tls = TlsPaths(harness.plan.etcd[0].tls_dir)  # an etcd member's own certificate is good for client auth
    for name, source in ((CA_FILE, harness.ca_file), (CLIENT_CERT, etcd_tls.cert), (CLIENT_KEY, etcd_tls.key)):
        shutil.copyfile(source, directory / name)
    password = directory / STATS_PASSWORD_FILE
    password.write_text(harness.passwords.stats)
    password.chmod(0o600)
    port = free_ports(1)[0]
    log_path = directory / "prometheus.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([binary, f"--config.file={directory / SCRAPE_FILE}", f"--storage.tsdb.path={directory}/db",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert processes.wait_for(lambda: _ready(url), 30), log_path.read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=5) as response:
        return json.loads(response.read())["data"]


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus's text exposition format."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return samples
