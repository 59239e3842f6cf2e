"""No-op pest detection for the orchestrator bench: the real agent's capability and models.

A field whose id starts with ``pests-`` holds one fixed detection (so the workflow goes on to
the crop mapper); any other field is clean. Nothing is computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expediter import Agent, TaskContext, load_agent

real = load_agent(Path(__file__).resolve().parents[2] / "agents" / "pest_detector.py")

BOX = {"x_min": 0.2, "y_min": 0.2, "x_max": 0.4, "y_max": 0.4}
INFESTED = real.output_model.model_validate(
    {
        "field_id": "bench", "pests": 3, "species": ["aphid"],
        "detections": [{"species": "aphid", "count": 3, "confidence": 0.9, "box": BOX}],
        "zone": BOX, "severity": "low",
    }
)  # fmt: skip
CLEAN = real.output_model.model_validate(
    {"field_id": "bench", "pests": 0, "species": [], "detections": [], "zone": None,
     "severity": "none"}
)  # fmt: skip


async def pests(task: Any, ctx: TaskContext) -> Any:
    fixed = INFESTED if task.field_id.startswith("pests-") else CLEAN
    return fixed.model_copy(update={"field_id": task.field_id})


agent = Agent(
    name="noop-pest-detector", capability=real.capability, version=real.version,
    input_model=real.input_model, output_model=real.output_model, handler=pests,
    resources=real.resources, description="No-op pest detection (bench).",
)  # fmt: skip
