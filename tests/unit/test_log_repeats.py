"""The worker's log handler summarises aiokafka's repeated warnings (issue 11: a 45 s broker
outage wrote 12 MB of them): the first of each message, then one line per window with the count."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from expediter.worker.logs import JsonFormatter, PlainFormatter, RepeatFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines(clock: Clock) -> Iterator[list[str]]:
    """What a handler with a RepeatFilter (10 s windows) writes, one string per line."""
    out: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    handler = ListHandler()
    handler.addFilter(RepeatFilter(10.0, sink=handler.handle, clock=clock))
    for name in ("aiokafka", "expediter"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    yield out
    for name in ("aiokafka", "expediter"):
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.propagate = True


def unable(node: int = 1, port: int = 9092) -> None:
    logging.getLogger("aiokafka").error(
        "Unable connect to node with id %s: [Errno 111] Connect call failed ('127.0.0.1', %s)",
        node, port,
    )  # fmt: skip


def test_the_first_passes_then_one_summary_per_window(clock: Clock, lines: list[str]) -> None:
    for _ in range(313):  # a flood: 313 in 9.3 s
        unable()
        clock.now += 0.03
    assert lines == [
        "ERROR aiokafka: Unable connect to node with id 1: [Errno 111] Connect call failed "
        "('127.0.0.1', 9092)"
    ]
    clock.now += 1.0  # the window has passed: the next one brings the summary, then passes
    unable(port=9093)
    assert len(lines) == 3
    assert lines[1] == (
        "ERROR aiokafka: Unable connect to node with id 1: [Errno 111] Connect call failed "
        "('127.0.0.1', 9092) ... repeated 312 times in the last 10 s"
    )
    assert lines[2].endswith("('127.0.0.1', 9093)")


def test_a_flood_that_stops_is_summarised_by_the_next_line(clock: Clock, lines: list[str]) -> None:
    for _ in range(50):
        unable()
    clock.now += 12
    logging.getLogger("expediter").warning("back")
    assert lines[1:] == [
        "ERROR aiokafka: Unable connect to node with id 1: [Errno 111] Connect call failed "
        "('127.0.0.1', 9092) ... repeated 49 times in the last 12 s",
        "WARNING expediter: back",
    ]


def test_different_messages_and_our_own_lines_are_not_suppressed(
    clock: Clock, lines: list[str]
) -> None:
    unable()
    logging.getLogger("aiokafka").warning("Unable to update metadata from %s", [1])
    logging.getLogger("aiokafka").error("Unable connect to node with id %s", 1)  # another text
    for n in range(5):
        logging.getLogger("expediter").warning("task %s failed", n)
    unable()  # a repeat: suppressed
    assert len(lines) == 3 + 5


def test_a_summary_line_reads_like_the_message_it_counts(clock: Clock) -> None:
    summaries: list[logging.LogRecord] = []
    repeats = RepeatFilter(10.0, sink=summaries.append, clock=clock)
    record = logging.makeLogRecord(
        {"name": "aiokafka", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": "Unable to update metadata from %s", "args": ([1],)}
    )  # fmt: skip
    assert [repeats.filter(record), repeats.filter(record)] == [True, False]
    clock.now += 10
    assert repeats.filter(record)
    line = PlainFormatter().format(summaries[0])
    assert line.endswith(
        "ERROR   aiokafka: Unable to update metadata from [1] ... repeated 1 time in the last 10 s"
    ), line
    assert '"logger": "aiokafka"' in JsonFormatter().format(summaries[0])
    assert "_expediter" not in JsonFormatter().format(summaries[0])


def test_a_single_occurrence_gets_no_summary(clock: Clock, lines: list[str]) -> None:
    unable()
    clock.now += 30
    unable()
    assert len(lines) == 2
    assert "repeated" not in "".join(lines)


def test_configure_logging_installs_it_on_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging(json_logs=False)
        for _ in range(100):
            unable()
        output = stream.getvalue().splitlines()
        assert len([line for line in output if "Unable connect" in line]) == 1
    finally:
        for handler in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(handler)
        root.setLevel(before[1])
