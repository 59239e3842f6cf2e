"""No-op soil analysis for the orchestrator bench: the real agent's capability and models,
and a handler that returns a fixed reading (echoing the field id) without computing anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expediter import Agent, TaskContext, load_agent

real = load_agent(Path(__file__).resolve().parents[2] / "agents" / "soil_analyzer.py")

FIXED = real.output_model.model_validate(
    {
        "field_id": "bench",
        "depth_cm": 30,
        "measurements": {
            "ph": 6.5, "moisture_pct": 25.0, "nitrogen_ppm": 30.0, "phosphorus_ppm": 40.0,
            "potassium_ppm": 150.0, "organic_matter_pct": 3.0, "temperature_c": 15.0,
        },
        "health": "good",
        "advice": {"recommendation": "none", "note": "no-op"},
    }
)  # fmt: skip


async def soil(task: Any, ctx: TaskContext) -> Any:
    return FIXED.model_copy(update={"field_id": task.field_id})


agent = Agent(
    name="noop-soil-analyzer", capability=real.capability, version=real.version,
    input_model=real.input_model, output_model=real.output_model, handler=soil,
    resources=real.resources, description="No-op soil analysis (bench).",
)  # fmt: skip
