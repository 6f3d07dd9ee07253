"""A live progress line on stderr for long steps: redrawn in place on a terminal, one final line always."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, max(total, 1), stream
        self.done = 0
        self.started = time.monotonic()
        self._live = stream.isatty()
        self._drawn = 0.0

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if self._live and now - self._drawn > 0.2:
            self._drawn = now
            self.stream.write(f"\r{self.line()}")
            self.stream.flush()

    def line(self) -> str:
        pct = 100 * min(self.done, self.total) / self.total
        return f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {time.monotonic() - self.started:.1f} s"


@contextmanager
def progress(label: str, total: int, stream: TextIO | None = None) -> Iterator[Progress]:
    bar = Progress(label, total, stream or sys.stderr)
    try:
        yield bar
    finally:
        bar.stream.write(("\r" if bar._live else "") + bar.line() + "\n")
        bar.stream.flush()
