"""The agents in agents/: they load, their handlers produce valid outputs, the demo repeats."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from expediter import Agent, TaskContext, Tool, load_agents
from expediter.errors import ToolError
from expediter.reasoning import RuleEngine

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"

FIXED = {
    "perception": "perception",
    "reasoning": "reasoning",
    "action": "action",
    "soil-analyzer": "soil-analysis",
    "pest-detector": "pest-detection",
    "crop-mapper": "crop-mapping",
}
FIELDS = [f"field-{i}" for i in range(20)]


class _NoTools:
    """These agents declare no tools: any call is refused, as the worker would."""

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raise ToolError(f"tool {name!r} refused: this agent declares no tools")


@pytest.fixture(scope="module")
def agents() -> dict[str, Agent[Any, Any]]:
    return {agent.capability: agent for agent in load_agents(AGENTS_DIR)}


async def run(agent: Agent[Any, Any], payload: dict[str, Any]) -> Any:
    """The handler on a validated input (JSON-like, as a task brings it), output checked."""
    ctx = TaskContext(
        task_id=uuid.uuid4(),
        workflow_id="wf-test",
        step_id=agent.capability,
        attempt=1,
        engine=RuleEngine(agent.rules),
        tools=_NoTools(),
        log=logging.getLogger("tests.agents"),
    )
    output = await agent.handler(agent.input_model.model_validate(payload), ctx)
    assert isinstance(output, agent.output_model)
    # The output survives the trip through JSON that a result event makes.
    assert agent.output_model.model_validate_json(output.model_dump_json()) == output
    return output


def test_every_agent_file_loads_with_its_fixed_name_and_capability(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    assert {agent.name: capability for capability, agent in agents.items()} == FIXED
    gpu = {agent.name for agent in agents.values() if agent.resources.accelerator == "gpu"}
    assert gpu == {"reasoning", "crop-mapper"}
    for agent in agents.values():
        assert agent.version
        assert agent.description
        # The registry publishes both schemas in the agent card.
        assert agent.input_model.model_json_schema()["type"] == "object"
        assert agent.output_model.model_json_schema()["type"] == "object"
    assert agents["reasoning"].rules is not None
    assert agents["soil-analysis"].rules is not None


def test_only_the_action_agent_has_tools(agents: dict[str, Agent[Any, Any]]) -> None:
    tools = agents["action"].tools
    assert all(isinstance(t, Tool) for t in tools)
    assert {t.name for t in tools} == {
        "create_work_order",
        "schedule_irrigation",
        "notify_agronomist",
    }
    assert [a.name for a in agents.values() if a.tools] == ["action"]


async def test_perception_normalises_text_and_image(agents: dict[str, Agent[Any, Any]]) -> None:
    out = await run(
        agents["perception"],
        {
            "text": "  Aphids   on the NORTH edge;\n aphids   spreading near the\tpond ",
            "image": {
                "width": 4000,
                "height": 3000,
                "format": "JPG",
                "exif": {"Make": "Canon", "Model": "EOS R6", "Orientation": 6},
                "captured_at": "2025-06-01T06:30:00Z",
            },
        },
    )
    assert out.text.normalised == "aphids on the north edge; aphids spreading near the pond"
    assert out.text.tokens == 10
    assert out.text.language == "en"
    assert out.text.keywords[0] == "aphids"
    assert "the" not in out.text.keywords
    # EXIF orientation 6: stored landscape, shown portrait.
    assert (out.image.width, out.image.height) == (3000, 4000)
    assert out.image.orientation == "portrait"
    assert out.image.aspect_ratio == 0.75
    assert out.image.megapixels == 12.0
    assert out.image.format == "jpeg"
    assert out.image.camera == "Canon EOS R6"


async def test_perception_guesses_language_and_handles_no_image(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    french = await run(agents["perception"], {"text": "Les pucerons sont dans le champ"})
    assert french.text.language == "fr"
    assert french.image is None
    empty = await run(agents["perception"], {})
    assert (empty.text.tokens, empty.text.language, empty.text.keywords) == (0, "unknown", [])
    square = await run(agents["perception"], {"image": {"width": 512, "height": 512}})
    assert square.image.orientation == "square"


async def test_reasoning_plans_with_the_rule_engine(agents: dict[str, Agent[Any, Any]]) -> None:
    plan = await run(
        agents["reasoning"],
        {
            "goal": "protect the crop",
            "field_id": "field-7",
            "context": {"pests": 18, "soil": {"moisture_pct": 9.8}},
        },
    )
    assert plan.priority == "high"
    assert [s.tool for s in plan.steps] == [
        "create_work_order",
        "schedule_irrigation",
        "notify_agronomist",
    ]
    # Every tool step's arguments validate against the action agent's tool of that name, so
    # the plan can be carried out as it is.
    tools = {t.name: t for t in agents["action"].tools}
    for step in plan.steps:
        tools[step.tool].arguments.model_validate(step.arguments)
        assert step.arguments["field_id"] == "field-7"
    quiet = await run(agents["reasoning"], {"goal": "check", "context": {"pests": 0}})
    assert quiet.priority == "low"
    assert [s.tool for s in quiet.steps] == ["none"]


def test_the_plan_schema_is_closed_for_grammar_decoding(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    schema = agents["reasoning"].output_model.model_json_schema()
    assert schema["properties"]["priority"]["enum"] == ["low", "medium", "high", "urgent"]
    assert schema["properties"]["steps"]["maxItems"] == 5
    assert schema["additionalProperties"] is False
    step = schema["$defs"]["PlanStep"]["properties"]
    assert "enum" in step["tool"]
    assert step["action"]["maxLength"] <= 80
    assert step["rationale"]["maxLength"] <= 200
    assert step["arguments"]["maxProperties"] <= 8


async def test_soil_analysis_is_deterministic_per_field(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    first = await run(agents["soil-analysis"], {"field_id": "field-3"})
    again = await run(agents["soil-analysis"], {"field_id": "field-3"})
    assert first == again
    other = await run(agents["soil-analysis"], {"field_id": "field-4"})
    assert other.measurements != first.measurements
    deeper = await run(agents["soil-analysis"], {"field_id": "field-3", "depth_cm": 60})
    assert deeper.measurements != first.measurements
    m = first.measurements
    assert 4.8 <= m.ph <= 8.4
    assert 6 <= m.moisture_pct <= 42


async def test_soil_advice_follows_the_readings(agents: dict[str, Agent[Any, Any]]) -> None:
    seen = set()
    for field in FIELDS:
        out = await run(agents["soil-analysis"], {"field_id": field})
        m, advice = out.measurements, out.advice
        seen.add(advice.recommendation)
        if m.moisture_pct < 15:
            assert advice.recommendation == "irrigate"
        elif advice.recommendation == "none":
            assert 5.8 <= m.ph <= 7.8
            assert m.nitrogen_ppm >= 15
    assert len(seen) >= 3  # the fleet's fields are not all alike


async def test_pest_detector_is_deterministic_and_some_fields_are_clean(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    outputs = {f: await run(agents["pest-detection"], {"field_id": f}) for f in FIELDS}
    assert {f: await run(agents["pest-detection"], {"field_id": f}) for f in FIELDS} == outputs
    clean = [f for f, out in outputs.items() if out.pests == 0]
    infested = [f for f, out in outputs.items() if out.pests > 0]
    assert clean
    assert infested
    for field in clean:
        out = outputs[field]
        assert (out.species, out.detections, out.zone, out.severity) == ([], [], None, "none")
    for field in infested:
        out = outputs[field]
        assert out.pests == sum(d.count for d in out.detections)
        assert out.species == sorted({d.species for d in out.detections})
        assert out.severity != "none"
        zone = out.zone
        for d in out.detections:
            assert d.confidence >= 0.5
            assert zone.x_min <= d.box.x_min <= d.box.x_max <= zone.x_max
            assert zone.y_min <= d.box.y_min <= d.box.y_max <= zone.y_max


async def test_pest_confidence_threshold_filters_detections(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    for field in FIELDS:
        everything = await run(agents["pest-detection"], {"field_id": field, "min_confidence": 0})
        strict = await run(agents["pest-detection"], {"field_id": field, "min_confidence": 0.9})
        assert strict.pests <= everything.pests
        assert all(d.confidence >= 0.9 for d in strict.detections)


async def test_crop_mapper_zooms_in_on_the_pest_zone(agents: dict[str, Agent[Any, Any]]) -> None:
    mapped = 0
    for field in FIELDS:
        pests = await run(agents["pest-detection"], {"field_id": field})
        if pests.zone is None:
            continue
        mapped += 1
        task = {"field_id": field, "zones": [d.box.model_dump() for d in pests.detections]}
        out = await run(agents["crop-mapping"], task)
        assert out == await run(agents["crop-mapping"], task)
        assert out.zoom > out.field_zoom
        assert 1 <= len(out.tiles) <= 16
        assert all(t.z == out.zoom for t in out.tiles)
        assert out.hotspots.count == sum(t.hotspot for t in out.tiles) >= 1
        assert out.hotspots.peak is not None
        assert out.hotspots.peak.hotspot
        assert out.hotspots.peak.intensity == max(t.intensity for t in out.tiles)
        assert 0 < out.hotspots.infested_area_ha <= out.area_ha
        # One tile budget: the union zone is larger, so it is not mapped deeper.
        union = await run(
            agents["crop-mapping"],
            {"field_id": field, "zones": [pests.zone.model_dump()], "max_tiles": 9},
        )
        assert out.field_zoom < union.zoom <= out.zoom
        assert len(union.tiles) <= 9
    assert mapped > 0


async def test_crop_mapper_without_zones_maps_the_whole_field(
    agents: dict[str, Agent[Any, Any]],
) -> None:
    out = await run(agents["crop-mapping"], {"field_id": "field-1"})
    assert out.zoom == out.field_zoom
    assert 1 <= len(out.tiles) <= 4
    assert out.hotspots.count == 0
    assert out.hotspots.peak is None
    assert out.hotspots.infested_area_ha == 0


@pytest.mark.parametrize(
    ("capability", "payload"),
    [
        ("soil-analysis", {"field_id": "no spaces allowed"}),
        ("pest-detection", {"field_id": ""}),
        ("crop-mapping", {"field_id": "f", "zones": [{"x_min": 0.5, "y_min": 0, "x_max": 0.1,
                                                      "y_max": 1}]}),
        ("reasoning", {"goal": ""}),
        ("action", {"calls": [{"tool": "x"}] * 21}),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_by_the_models(
    agents: dict[str, Agent[Any, Any]], capability: str, payload: dict[str, Any]
) -> None:
    model: type[BaseModel] = agents[capability].input_model
    with pytest.raises(ValueError, match="validation error"):
        model.model_validate(payload)
