"""The demo workflow of the design: analyse one field.

Soil analysis and pest detection run in parallel for the field; if pests were found, the crop
mapper zooms in on where they are; the report joins all the results.

    expediter submit field-analysis --input '{"field_id": "field-17"}' --wait
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from expediter import All, Parallel, Step, Workflow, WorkflowState


class FieldAnalysisInput(BaseModel):
    """What `submit field-analysis --input` takes; a misspelt field is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    field_id: str = Field(min_length=1)
    depth_cm: int = Field(default=30, gt=0)
    """How deep the soil is sampled."""


def soil_input(state: WorkflowState) -> dict[str, Any]:
    return {"field_id": state.input["field_id"], "depth_cm": state.input["depth_cm"]}


def pest_input(state: WorkflowState) -> dict[str, Any]:
    return {"field_id": state.input["field_id"]}


def pests_found(state: WorkflowState) -> bool:
    return int(state.output("pests").get("pests", 0)) > 0


def map_input(state: WorkflowState) -> dict[str, Any]:
    zone = state.output("pests").get("zone")
    return {"field_id": state.input["field_id"], "zones": [zone] if zone else []}


def report(state: WorkflowState) -> dict[str, Any]:
    soil = state.output("soil")
    pests = state.output("pests")
    crop = state.output("map")
    return {
        "field_id": state.input["field_id"],
        "soil": {
            "health": soil.get("health"),
            "advice": soil.get("advice"),
            "measurements": soil.get("measurements"),
        },
        "pests": {
            "count": pests.get("pests", 0),
            "species": pests.get("species", []),
            "severity": pests.get("severity"),
        },
        "map": (
            {
                "zoom": crop.get("zoom"),
                "hotspots": crop.get("hotspots"),
                "tiles": len(crop.get("tiles", [])),
            }
            if crop
            else None
        ),
    }


workflow = Workflow(
    name="field-analysis",
    input_model=FieldAnalysisInput,
    stages=[
        Parallel(
            "survey",
            [
                Step("soil", "soil-analysis", soil_input, deadline_seconds=60),
                Step("pests", "pest-detection", pest_input, deadline_seconds=60),
            ],
            join=All(),
        ),
        Step("map", "crop-mapping", map_input, when=pests_found, deadline_seconds=120),
    ],
    report=report,
)
