"""Bench: decode + validate + encode of a typical ~300-byte TaskEvent, per second.

Baseline, measured in the same run on the same bytes: orjson.loads + orjson.dumps (parsing and
serialising with no validation). The last line is one JSON object with the figures and
``ratio`` = expediter rate / orjson rate (1.0 would mean validation is free).

The ceiling, also measured in the same run: what any envelope codec could reach while a payload
stays a pydantic model. The envelope is parsed and written by orjson with no validation at
all, and only the payload goes through its model (``validate_json`` on its bytes, the model's
serialiser back), as a handler's typed input needs. ``ceiling_ratio`` = that rate / orjson's;
``ratio_of_ceiling`` = expediter's / the ceiling's.

    .venv/bin/python bench/bench_events.py [--seconds 1.0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import orjson
from pydantic import BaseModel

from expediter.events import Producer, TaskEvent, decode, encode


class SoilInput(BaseModel):
    field_id: str
    depth_cm: int
    crop: str


def sample() -> bytes:
    event = TaskEvent[SoilInput](
        producer=Producer(name="orchestrator", version="0.1.0"),
        workflow_id="wf-000042",
        step_id="soil",
        capability="soil-analysis",
        input=SoilInput(field_id="field-17", depth_cm=30, crop="wheat"),
    )
    return encode(event)


def rate(work: Callable[[], object], seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            work()
        done += 200
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    data = sample()
    model = TaskEvent[SoilInput]
    assert decode(data, model) == decode(encode(decode(data, model)), model)

    def ours() -> bytes:
        return encode(decode(data, model))

    def baseline() -> bytes:
        return orjson.dumps(orjson.loads(data))

    validate = SoilInput.__pydantic_validator__.validate_json
    serialise = SoilInput.__pydantic_serializer__.to_json

    def ceiling() -> bytes:
        document = orjson.loads(data)
        payload = validate(orjson.dumps(document["input"]))
        document["input"] = orjson.Fragment(serialise(payload))
        return orjson.dumps(document)

    assert orjson.loads(ceiling()) == orjson.loads(baseline())
    ours_rates, base_rates, ceiling_rates = [], [], []
    for round_ in range(args.rounds):
        # Interleaved rounds, so that noise from the shared machine hits each side alike.
        ours_rates.append(rate(ours, args.seconds))
        base_rates.append(rate(baseline, args.seconds))
        ceiling_rates.append(rate(ceiling, args.seconds))
        print(json.dumps({"round": round_, "expediter_per_s": round(ours_rates[-1]),
                          "orjson_per_s": round(base_rates[-1]),
                          "ceiling_per_s": round(ceiling_rates[-1])}))  # fmt: skip
    ours_median = statistics.median(ours_rates)
    base_median = statistics.median(base_rates)
    ceiling_median = statistics.median(ceiling_rates)
    print(
        json.dumps(
            {
                "bench": "events",
                "event_bytes": len(data),
                "expediter_per_s": round(ours_median),
                "orjson_per_s": round(base_median),
                "ceiling_per_s": round(ceiling_median),
                "ceiling_ratio": round(ceiling_median / base_median, 4),
                "ratio_of_ceiling": round(ours_median / ceiling_median, 4),
                "ratio": round(ours_median / base_median, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
