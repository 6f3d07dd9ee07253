"""The loader's batched COPY (benchmarks/steps.py copy_stream): batches of a bounded size, a batch that failed in
the transport sent again on a new connection, data errors never retried. Fake connections, no server."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from benchmarks import steps
from benchmarks.errors import BenchmarkError

CITUS_COPY = ("failed to COPY to shard 102023 on 127.0.0.1:56859\nDETAIL:  failed to send 91 bytes \n"
              "CONTEXT:  COPY vehicle_locations_data, line 1014533")


class FakeCopy:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn
        self.rows: list[str] = []

    def __enter__(self) -> FakeCopy:
        return self

    def write(self, text: str) -> None:
        self.rows += text.splitlines()
        self.conn.written += len(text.splitlines())
        if self.conn.fail_after is not None and self.conn.written > self.conn.fail_after:
            raise self.conn.error

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:  # the COPY ended and committed: only now are its rows in the table
            self.conn.server.committed.append(self.rows)


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def copy(self, sql: str) -> FakeCopy:
        self.conn.server.statements.append(sql)
        return FakeCopy(self.conn)


class FakeConn:
    def __init__(self, server: FakeServer, fail_after: int | None, error: Exception | None) -> None:
        self.server, self.fail_after, self.error = server, fail_after, error
        self.closed = False
        self.written = 0  # rows written over this connection, every COPY counted

    def execute(self, sql: str) -> Any:
        raise psycopg.OperationalError("no server here")  # _server_of records '?'

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True


class FakeServer:
    """Hands out connections; `failures` are (fail after n rows, error) for the connections in turn."""

    def __init__(self, *failures: tuple[int, Exception]) -> None:
        self.failures = list(failures)
        self.connections: list[FakeConn] = []
        self.committed: list[list[str]] = []
        self.statements: list[str] = []

    def connect(self) -> FakeConn:
        fail_after, error = self.failures.pop(0) if self.failures else (None, None)
        conn = FakeConn(self, fail_after, error)
        self.connections.append(conn)
        return conn


def lines(n: int) -> list[str]:
    return [f"{i}\trow\n" for i in range(n)]


def stream(server: FakeServer, rows: int, batch_rows: int, attempts: int = 3) -> tuple[dict[str, Any], list[int]]:
    progress: list[int] = []
    result = steps.copy_stream(server.connect, "COPY t FROM STDIN", iter(lines(rows)), progress.append,
                               batch_rows=batch_rows, attempts=attempts, name="stream 1", sleep=lambda _: None)
    return result, progress


def test_batches_are_bounded_and_cover_every_row_once() -> None:
    server = FakeServer()
    result, progress = stream(server, 25_001, 10_000)
    assert [len(b) for b in server.committed] == [10_000, 10_000, 5_001]
    assert [r for b in server.committed for r in b] == [line.rstrip("\n") for line in lines(25_001)]
    assert result["batches"] == 3 and result["retries"] == []
    assert len(server.connections) == 1  # one connection while nothing fails
    assert sum(progress) == 25_001


def test_batch_size_larger_than_the_stream_is_one_copy() -> None:
    server = FakeServer()
    result, _ = stream(server, 7, steps.COPY_BATCH_ROWS)
    assert result["batches"] == 1 and [len(b) for b in server.committed] == [7]


def test_empty_stream_sends_nothing() -> None:
    server = FakeServer()
    result, _ = stream(server, 0, 100)
    assert result == {"batches": 0, "retries": [], "nodes": []} and server.connections == []


@pytest.mark.parametrize("error", [
    errors.lookup("58030")(CITUS_COPY),  # what Citus raises (multi_copy.c: ERRCODE_IO_ERROR)
    errors.lookup("XX000")(CITUS_COPY),
    errors.lookup("08006")("connection failure"),
    psycopg.OperationalError("SSL SYSCALL error: EOF detected"),  # libpq, no SQLSTATE
    errors.lookup("57P01")("terminating connection due to administrator command"),
])
def test_a_transport_failure_is_retried_on_a_new_connection(error: Exception) -> None:
    server = FakeServer((15_000, error))  # the first connection fails inside batch 2; the next one is healthy
    result, progress = stream(server, 30_000, 10_000)
    assert [len(b) for b in server.committed] == [10_000, 10_000, 10_000]  # batch 2 once, not twice
    assert len(server.connections) == 2 and server.connections[0].closed
    assert result["retries"] == [{"batch": 2, "first_row": 10_000, "attempt": 1, "error": steps.first_line(error)}]
    assert sum(progress) == 30_000  # the rolled-back rows were taken off the progress count


@pytest.mark.parametrize("error", [
    errors.lookup("22P02")("invalid input syntax for type integer"),  # data errors: never again
    errors.lookup("23505")("duplicate key value violates unique constraint"),
    errors.lookup("53100")("could not extend file: No space left on device"),
    errors.lookup("57014")("canceling statement due to statement timeout"),
    errors.lookup("XX000")("unexpected internal error"),  # XX000 without Citus's COPY transport message
])
def test_other_errors_are_not_retried(error: Exception) -> None:
    server = FakeServer((5, error))
    with pytest.raises(type(error)):
        stream(server, 30_000, 10_000)
    assert len(server.connections) == 1 and server.committed == []


def test_exhausted_retries_name_the_batch_and_the_last_error() -> None:
    first = errors.lookup("58030")(CITUS_COPY)
    last = psycopg.OperationalError("SSL error: bad length")
    server = FakeServer((10_005, first), (5, first), (5, last))  # batch 1 commits; batch 2 fails 3 times
    expected = r"stream 1 batch 2 \(the stream's rows 10,000 to 19,999 at most\) failed 3 times.*bad length"
    with pytest.raises(BenchmarkError, match=expected):
        stream(server, 30_000, 10_000, attempts=3)
    assert [len(b) for b in server.committed] == [10_000]
    assert all(c.closed for c in server.connections) and len(server.connections) == 3


@pytest.mark.parametrize("error, retry", [
    (errors.lookup("58030")("failed to COPY to shard 1 on h:1"), True),
    (errors.lookup("58030")("could not read block 7 in file"), False),  # an I/O error that is not the transport
    (errors.lookup("08P01")("protocol violation"), True),
    # Citus, a worker connection lost while ending the COPY or preparing its commit (remote_transaction.c)
    (errors.lookup("XX000")("failure on connection marked as essential: 127.0.0.1:41207"), True),
    # Citus relaying the worker's FATAL for a terminated COPY backend under XX000 (seen in make test)
    (errors.lookup("XX000")("terminating connection due to administrator command"), True),
    (errors.lookup("57P03")("the database system is starting up"), True),
    (errors.lookup("42P01")('relation "t" does not exist'), False),
    (ValueError("not a database error"), False),
])
def test_transport_rule(error: Exception, retry: bool) -> None:
    assert steps.is_transport_failure(error) is retry


def test_a_batch_is_sent_while_it_is_generated_and_kept_for_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first try writes each part as soon as it is generated (the client's work overlaps the server's);
    the retry re-sends what was generated, then generates the rest: every row once, in order."""
    generated: list[int] = []

    def source() -> Any:
        for i, line in enumerate(lines(2_500)):
            generated.append(i)
            yield line

    server = FakeServer((1_500, errors.lookup("08006")("connection failure")))
    seen_at_first_write: list[int] = []

    class Watching(FakeCopy):
        def write(self, text: str) -> None:
            if not seen_at_first_write:
                seen_at_first_write.append(len(generated))
            super().write(text)

    monkeypatch.setattr(FakeCursor, "copy", lambda self, sql: Watching(self.conn))
    monkeypatch.setattr(steps, "WRITE_ROWS", 500)
    result = steps.copy_stream(server.connect, "COPY t FROM STDIN", source(), lambda _: None,
                               batch_rows=2_000, sleep=lambda _: None)
    assert seen_at_first_write == [500]  # not the whole batch of 2,000 first
    assert [len(b) for b in server.committed] == [2_000, 500]
    assert [r for b in server.committed for r in b] == [line.rstrip("\n") for line in lines(2_500)]
    assert len(generated) == 2_500 and result["retries"][0]["batch"] == 1
