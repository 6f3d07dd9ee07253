"""Every import points one way: tests -> benchmarks -> cluster. The product never needs its tests or benchmarks
to run, and the benchmarks never need the tests (a user runs them against their own cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import importlib, pkgutil, sys
package = importlib.import_module({package!r})
for module in pkgutil.walk_packages(package.__path__, {package!r} + "."):
    importlib.import_module(module.name)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})))
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("cluster", ("tests", "benchmarks")), ("benchmarks", ("tests",))],
)
def test_importing_a_package_and_all_its_modules_pulls_in_nothing_above_it(
    package: str, forbidden: tuple[str, ...]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=package, forbidden=set(forbidden))],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"{package} imports {done.stdout.strip()}"
