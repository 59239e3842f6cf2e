"""No-op crop mapping for the orchestrator bench: the real agent's capability and models,
and a handler that returns a fixed one-tile map (echoing the field id) without computing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expediter import Agent, TaskContext, load_agent

real = load_agent(Path(__file__).resolve().parents[2] / "agents" / "crop_mapper.py")

TILE = {"z": 17, "x": 65536, "y": 43000, "intensity": 0.5, "hotspot": True}
FIXED = real.output_model.model_validate(
    {
        "field_id": "bench", "crop": "wheat", "ndvi": 0.5,
        "centre": {"lat": 45.0, "lon": 10.0}, "area_ha": 40.0, "field_zoom": 15, "zoom": 17,
        "tiles": [TILE],
        "hotspots": {"count": 1, "peak": TILE, "mean_intensity": 0.5, "infested_area_ha": 1.6,
                     "infested_fraction": 0.04},
    }
)  # fmt: skip


async def crop_map(task: Any, ctx: TaskContext) -> Any:
    return FIXED.model_copy(update={"field_id": task.field_id})


agent = Agent(
    name="noop-crop-mapper", capability=real.capability, version=real.version,
    input_model=real.input_model, output_model=real.output_model, handler=crop_map,
    resources=real.resources, description="No-op crop mapping (bench).",
)  # fmt: skip
