"""The demo workflow of the design: analyse one field.

Soil analysis and pest detection run in parallel for the field; if pests were found, the crop
mapper zooms in on where they are. When the infested area is large (``drone_approval_ha``, 50 ha
by default), dispatching bio-drones over it waits for an agronomist's approval: the request says
where and how much; with no answer in 10 minutes it escalates to the farm managers, and with
none 20 minutes later the dispatch is rejected. The report joins all the results, the drone
order included (dispatched only when approved).

    expediter submit field-analysis --input '{"field_id": "field-17"}' --wait
    expediter approvals list
    expediter approvals approve <workflow id>/drones --as ana --comment "go"
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from expediter import All, Approval, Group, Parallel, Step, Workflow, WorkflowState

AGRONOMISTS = Group("agronomists", ["ana", "ben"])
FARM_MANAGERS = Group("farm-managers", ["carla"])


class FieldAnalysisInput(BaseModel):
    """What `submit field-analysis --input` takes; a misspelt field is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    field_id: str = Field(min_length=1)
    depth_cm: int = Field(default=30, gt=0)
    """How deep the soil is sampled."""
    drone_approval_ha: float = Field(default=50.0, ge=0)
    """Bio-drone dispatches over at least this many infested hectares wait for an agronomist."""


def soil_input(state: WorkflowState) -> dict[str, Any]:
    return {"field_id": state.input["field_id"], "depth_cm": state.input["depth_cm"]}


def pest_input(state: WorkflowState) -> dict[str, Any]:
    return {"field_id": state.input["field_id"]}


def pests_found(state: WorkflowState) -> bool:
    return int(state.output("pests").get("pests", 0)) > 0


def map_input(state: WorkflowState) -> dict[str, Any]:
    zone = state.output("pests").get("zone")
    return {"field_id": state.input["field_id"], "zones": [zone] if zone else []}


def infested_ha(state: WorkflowState) -> float:
    return float((state.output("map").get("hotspots") or {}).get("infested_area_ha", 0))


def large_infestation(state: WorkflowState) -> bool:
    return bool(state.output("map")) and infested_ha(state) >= state.input["drone_approval_ha"]


def drone_request(state: WorkflowState) -> dict[str, Any]:
    """What the agronomist is asked: where the drones would fly, and how much it covers."""
    pests, crop = state.output("pests"), state.output("map")
    hotspots = crop.get("hotspots") or {}
    return {
        "field_id": state.input["field_id"],
        "crop": crop.get("crop"),
        "zone": pests.get("zone"),
        "species": pests.get("species", []),
        "severity": pests.get("severity"),
        "infested_area_ha": infested_ha(state),
        "infested_fraction": hotspots.get("infested_fraction"),
        "hotspots": hotspots.get("count"),
        "peak": hotspots.get("peak"),
    }


def drone_order(state: WorkflowState) -> dict[str, Any] | None:
    """The dispatch order in the report: flown only when approved; None when none was needed."""
    decision = state.output("drones")
    if not decision:
        return None
    return {
        "dispatch": decision.get("approved") is True,
        "decision": decision.get("decision"),
        "by": decision.get("by") or decision.get("reason"),
        "comment": decision.get("comment"),
        "infested_area_ha": infested_ha(state),
        "zone": state.output("pests").get("zone"),
    }


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
        "drones": drone_order(state),
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
        Approval(
            "drones",
            ask=drone_request,
            approvers=[AGRONOMISTS],
            title="Dispatch bio-drones over the infested zone?",
            when=large_infestation,
            deadline_seconds=600,
            on_deadline="escalate",
            escalate_to=[FARM_MANAGERS],
            escalation_seconds=1200,
            after_escalation="reject",
        ),
    ],
    report=report,
)
