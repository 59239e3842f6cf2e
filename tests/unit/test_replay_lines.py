"""``replay --json`` lines: one valid JSON object per record, whatever the record holds.

The runtime's events are copied into their lines without being parsed again (trusted); every
other value is checked, and what is not JSON comes as base64. Each line must still parse, and
hold the record's fields, for ``jq`` and scripts.
"""

from __future__ import annotations

import json
from typing import Any

from aiokafka.structs import ConsumerRecord

from expediter.events import Producer, TaskEvent, to_record
from expediter.replaying import json_line, json_lines

TASK = TaskEvent(
    producer=Producer(name="orchestrator", version="1"), workflow_id="wf-7", step_id="soil",
    capability="soil-analysis", input={"field": "north", "note": "pH \u00e9lev\u00e9"},
)  # fmt: skip


def record(
    value: bytes | None, *, key: bytes | None = b"wf-7", headers: Any = (), offset: int = 3
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "tasks.soil-analysis", 1, offset, 1_764_450_000_000, 0, key, value, None,
        len(key or b""), len(value or b""), list(headers),
    )  # fmt: skip


def event_record(offset: int = 3) -> ConsumerRecord[bytes, bytes]:
    out = to_record(TASK)
    return record(out.value, key=out.key, headers=out.headers, offset=offset)


def lines(*records: ConsumerRecord[bytes, bytes]) -> list[dict[str, Any]]:
    text = json_lines(list(records))
    assert text.endswith("\n")
    assert text.count("\n") == len(records)  # one line a record, none split
    return [json.loads(line) for line in text.splitlines()]


def test_an_event_line_holds_the_record_and_its_value() -> None:
    (line,) = lines(event_record())
    assert line["topic"] == "tasks.soil-analysis"
    assert (line["partition"], line["offset"]) == (1, 3)
    assert line["timestamp"] == "2025-11-29T21:00:00.000Z"
    assert line["key"] == "wf-7"
    assert line["type"] == "task"
    assert line["headers"]["expediter-type"] == "task"
    assert line["headers"]["traceparent"].startswith("00-")
    assert line["value"] == json.loads(to_record(TASK).value)
    assert line["value"]["input"]["note"] == "pH \u00e9lev\u00e9"


def test_json_line_is_the_line_of_json_lines() -> None:
    one = event_record()
    assert json_line(one) + "\n" == json_lines([one])


def test_values_that_are_not_events_are_checked() -> None:
    poison, array, tombstone, pretty = lines(
        record(b"\x00\xffnot json", key=b"k"),
        record(b"[1]", key=None),
        record(None),
        record(b'{\n  "a": 1\n}', headers=[("expediter-type", b"task")]),
    )
    assert poison["value"] is None
    assert poison["value_base64"] == "AP9ub3QganNvbg=="
    assert poison["type"] == "record"
    assert array["value"] == [1]
    assert array["key"] is None
    assert tombstone["value"] is None
    assert tombstone["type"] == "tombstone"
    assert pretty["value"] == {"a": 1}  # written again on one line
    assert pretty["type"] == "task"


def test_one_odd_record_leaves_the_rest_of_its_batch_as_they_are() -> None:
    found = lines(
        event_record(0),
        record(b"\xfe not utf-8 {}", headers=[("expediter-type", b"task")], offset=1),
        event_record(2),
    )
    assert [line["offset"] for line in found] == [0, 1, 2]
    assert found[1]["value_base64"]
    assert found[0]["value"] == found[2]["value"] == json.loads(to_record(TASK).value)


def test_keys_and_headers_that_are_not_utf8_come_as_base64() -> None:
    out = to_record(TASK)
    (line,) = lines(record(out.value, key=b"\xff", headers=[*out.headers, ("bin", b"\xff")]))
    assert line["key"] is None
    assert line["key_base64"] == "/w=="
    assert line["headers"]["bin"] == "base64:/w=="
    assert line["value"]["workflow_id"] == "wf-7"
