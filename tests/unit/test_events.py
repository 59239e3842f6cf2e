"""Event contracts: round trips, typed payloads, versions, and the one decode error type."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from expediter.errors import DecodeError
from expediter.events import (
    AgentCard,
    DeadLetter,
    Producer,
    ResultEvent,
    ResultTemplate,
    TaskError,
    TaskEvent,
    TokenUsage,
    TraceParent,
    WorkflowEvent,
    continue_trace,
    decode,
    encode,
    to_record,
    trace_from_headers,
)

PRODUCER = Producer(name="orchestrator", version="0.1.0")
STEP = {"workflow_id": "wf-42", "step_id": "soil", "capability": "soil-analysis"}


class SoilInput(BaseModel):
    field_id: str
    depth_cm: int = 30


class SoilOutput(BaseModel):
    ph: float
    nitrogen_ppm: float


def samples() -> list[BaseModel]:
    task = TaskEvent[SoilInput](producer=PRODUCER, input=SoilInput(field_id="f-7"), **STEP)
    return [
        task,
        TaskEvent(producer=PRODUCER, input={"free": ["form", 1]}, attempt=3, **STEP),
        ResultEvent[SoilOutput](
            producer=PRODUCER, task_id=task.event_id, status="succeeded",
            output=SoilOutput(ph=6.5, nitrogen_ppm=12.0), **STEP,
        ),
        ResultEvent(
            producer=PRODUCER, task_id=task.event_id, status="failed",
            error=TaskError(retriable=True, code="timeout", message="took 61 s"), **STEP,
        ),
        WorkflowEvent(
            producer=PRODUCER, workflow_id="wf-42", workflow="field-analysis",
            status="step-completed", step_id="soil", detail={"ms": 12},
        ),
        AgentCard(
            producer=PRODUCER, name="soil-analyzer", capability="soil-analysis", version="1.0",
            instance="soil-analyzer-7d9f-abc", input_schema=SoilInput.model_json_schema(),
            output_schema=SoilOutput.model_json_schema(),
        ),
        DeadLetter(
            producer=PRODUCER, reason="invalid", detail="input.field_id: Field required",
            source_topic="tasks.soil-analysis", source_partition=2, source_offset=1041,
            original_key="d2YtNDI=", original_value="e30=",
            original_headers=[("traceparent", "MDA=")],
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_every_model_round_trips(event: BaseModel) -> None:
    data = encode(event)
    assert json.loads(data)["schema_version"] == "1.0"
    assert decode(data, type(event)) == event


def test_typed_payload_is_validated_in_the_same_pass() -> None:
    task = TaskEvent(producer=PRODUCER, input={"depth_cm": "deep"}, **STEP)
    with pytest.raises(DecodeError) as info:
        decode(encode(task), TaskEvent[SoilInput])
    assert info.value.reason == "invalid"
    assert "input.field_id" in info.value.detail
    assert "input.depth_cm" in info.value.detail


def test_newer_minor_with_unknown_fields_is_tolerated() -> None:
    task = samples()[0]
    document = json.loads(encode(task))
    document.update(schema_version="1.9", priority="high", labels={"team": "agro"})
    decoded = decode(json.dumps(document).encode(), TaskEvent[SoilInput])
    assert decoded.event_id == task.event_id
    assert decoded.input == SoilInput(field_id="f-7")


def test_unknown_major_is_refused_as_unsupported_version() -> None:
    document = json.loads(encode(samples()[0]))
    document["schema_version"] = "2.0"
    del document["input"]  # a v2 may look different in every way; the version wins
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(document).encode(), TaskEvent)
    assert info.value.reason == "unsupported-version"
    assert not info.value.retriable


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "undecodable"),
        (b"", "undecodable"),
        (b"\xff\xfe\x00", "undecodable"),
        (b"not json", "undecodable"),
        (b"[1, 2]", "invalid"),
        (b'{"type": "task"}', "invalid"),
        (b"{" + b" " * 1_000_001 + b"}", "oversized"),
    ],
)
def test_bad_bytes_get_a_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data, TaskEvent)
    assert info.value.reason == reason


def test_result_status_must_match_its_outcome() -> None:
    with pytest.raises(ValidationError, match="succeeded result has an output"):
        ResultEvent(producer=PRODUCER, task_id=uuid.uuid4(), status="succeeded", **STEP)
    with pytest.raises(ValidationError, match="failed result has an error"):
        ResultEvent(producer=PRODUCER, task_id=uuid.uuid4(), status="failed", output={}, **STEP)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TaskEvent(producer=PRODUCER, input={}, deadline=datetime(2030, 1, 1), **STEP)  # noqa: DTZ001


def test_trace_context_is_continued_with_a_new_span() -> None:
    parent = TraceParent.new()
    headers = [("other", b"x"), parent.header()]
    assert trace_from_headers(headers) == parent
    child = continue_trace(headers)
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id
    assert child.flags == parent.flags
    name, value = child.header()
    assert name == "traceparent"
    assert TraceParent.parse(value.decode()) == child


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-xyz",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",
    ],
)
def test_malformed_traceparent_starts_a_new_trace(value: str) -> None:
    assert trace_from_headers([("traceparent", value.encode())]) is None
    assert continue_trace([("traceparent", value.encode())]).trace_id != "0" * 32


# Property tests ----------------------------------------------------------------------------

identifiers = st.from_regex(r"\A[A-Za-z0-9._:/@-]{1,40}\Z")
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)  # fmt: skip
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip
producers = st.builds(Producer, name=identifiers, version=st.text(min_size=1, max_size=10))
step_fields = st.fixed_dictionaries(
    {
        "event_id": st.uuids(),
        "created_at": moments,
        "producer": producers,
        "workflow_id": identifiers,
        "step_id": identifiers,
        "capability": identifiers,
        "attempt": st.integers(1, 1000),
        "deadline": st.none() | moments,
    }
)
tasks = st.builds(
    lambda fields, payload: TaskEvent(**fields, input=payload),
    step_fields,
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
results = st.builds(
    lambda fields, task_id, ok, payload, err: ResultEvent(
        **fields, task_id=task_id, status="succeeded" if ok else "failed",
        output=payload if ok else None, error=None if ok else err,
    ),
    step_fields, st.uuids(), st.booleans(), st.dictionaries(st.text(max_size=10), json_values),
    st.builds(TaskError, retriable=st.booleans(), code=identifiers, message=st.text(max_size=50)),
)  # fmt: skip


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(event=st.one_of(tasks, results))
def test_any_valid_event_decodes_to_itself(event: TaskEvent | ResultEvent) -> None:
    assert decode(encode(event), type(event)) == event


class FreeOutput(BaseModel):
    values: dict[str, Any]
    note: str = Field(default="", alias="Note")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    task=tasks, values=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    note=st.text(max_size=20), attempt=st.integers(1, 1000), duration_ms=st.integers(0, 10**9),
    usage=st.builds(TokenUsage, prompt_tokens=st.integers(0, 10**6),
                    completion_tokens=st.integers(0, 10**6)) | st.just(TokenUsage()),
    created_at=moments, event_id=st.uuids(),
)  # fmt: skip
def test_a_templated_result_is_the_record_of_the_model(
    task: TaskEvent, values: dict[str, Any], note: str, attempt: int, duration_ms: int,
    usage: TokenUsage, created_at: datetime, event_id: uuid.UUID,
) -> None:  # fmt: skip
    """The worker's fast path writes byte for byte what the validating model writes."""
    output = FreeOutput(values=values, Note=note)
    trace = TraceParent.new()
    created_at = created_at.astimezone(UTC)
    template = ResultTemplate(PRODUCER)
    fast = template.record(
        task, output, attempt=attempt, usage=usage, duration_ms=duration_ms, trace=trace,
        event_id=event_id, created_at=created_at,
    )  # fmt: skip
    model = ResultEvent[FreeOutput](
        event_id=event_id, created_at=created_at, producer=PRODUCER, workflow_id=task.workflow_id,
        step_id=task.step_id, capability=task.capability, attempt=attempt, deadline=task.deadline,
        task_id=task.event_id, status="succeeded", output=output, usage=usage,
        duration_ms=duration_ms,
    )  # fmt: skip
    assert fast == to_record(model, trace=trace)
    assert decode(fast.value, ResultEvent[FreeOutput]) == model


def test_templated_results_get_fresh_version_4_ids_and_times() -> None:
    task = TaskEvent(producer=PRODUCER, input={}, **STEP)
    template = ResultTemplate(PRODUCER)
    output = FreeOutput(values={})
    before = datetime.now(UTC)
    results = [
        decode(template.record(task, output, attempt=1, usage=TokenUsage(), duration_ms=0,
                               trace=TraceParent.new()).value, ResultEvent)
        for _ in range(200)
    ]  # fmt: skip
    assert len({result.event_id for result in results}) == 200
    assert all(r.event_id.version == 4 and r.event_id.variant == uuid.RFC_4122 for r in results)
    assert all(before <= r.created_at <= datetime.now(UTC) for r in results)


@settings(max_examples=500)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for model in (TaskEvent, ResultEvent, WorkflowEvent, AgentCard, DeadLetter):
        with pytest.raises(DecodeError):
            decode(data, model)


@settings(max_examples=300)
@given(event=tasks, position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_corrupted_events_raise_only_decode_error(
    event: TaskEvent, position: int, byte: int
) -> None:
    data = bytearray(encode(event))
    data[position % len(data)] = byte
    reason = None
    try:
        decode(bytes(data), TaskEvent)
    except DecodeError as exc:
        reason = exc.reason
    # Either the flipped byte still makes a valid event, or the error names a decode reason.
    assert reason in (None, "undecodable", "invalid", "unsupported-version")


def test_records_are_keyed_for_their_partitioning() -> None:
    from expediter.events import record_key, to_record

    task, _, result, _, workflow, card, dead = samples()
    assert record_key(task) == b"wf-42"
    assert record_key(result) == b"wf-42"
    assert record_key(workflow) == b"wf-42"
    assert record_key(card) == b"soil-analysis/soil-analyzer-7d9f-abc"
    assert record_key(dead) == b"wf-42"  # the original record's key, base64-decoded
    record = to_record(task)
    headers = dict(record.headers)
    assert TraceParent.parse(headers["traceparent"].decode()) is not None
    assert headers["expediter-type"] == b"task"
    assert headers["expediter-schema-version"] == b"1.0"
    assert decode(record.value, TaskEvent[SoilInput]) == task
