"""Soil analyzer (fleet demo): measurements for a field, and a short recommendation.

The measurements are pseudo-readings derived from the field id with SHA-256, so a demo is
repeatable: the same field always reads the same. The recommendation comes from the reasoning
engine (``ctx.reason``), so the engine choice shows here: ``rules`` answers with thresholds, an
LLM answers under the small, closed SoilAdvice schema.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from expediter import Agent, AgentResources, PermanentError, TaskContext

FieldId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Recommendation = Literal["none", "irrigate", "fertilize", "lime", "sulfur", "drain"]

SYSTEM = "You are an agronomist. Recommend one action for the soil readings, in a short note."


class SoilInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    depth_cm: Annotated[int, Field(ge=5, le=100)] = 30


class SoilMeasurements(BaseModel):
    ph: Annotated[float, Field(ge=0, le=14)]
    moisture_pct: Annotated[float, Field(ge=0, le=100)]
    nitrogen_ppm: Annotated[float, Field(ge=0)]
    phosphorus_ppm: Annotated[float, Field(ge=0)]
    potassium_ppm: Annotated[float, Field(ge=0)]
    organic_matter_pct: Annotated[float, Field(ge=0, le=100)]
    temperature_c: float


class SoilAdvice(BaseModel):
    """What the engine answers; small and closed so a tiny model stays valid."""

    model_config = ConfigDict(extra="forbid")

    recommendation: Recommendation
    note: Annotated[str, Field(min_length=1, max_length=160)]


class SoilOutput(BaseModel):
    field_id: str
    depth_cm: int
    measurements: SoilMeasurements
    health: Literal["good", "fair", "poor"]
    advice: SoilAdvice


def _unit(digest: bytes, i: int) -> float:
    """The i-th pseudo-random number in [0, 1) of a digest (two bytes each)."""
    return int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 65536


def measure(field_id: str, depth_cm: int) -> SoilMeasurements:
    digest = hashlib.sha256(f"soil:{field_id}:{depth_cm}".encode()).digest()

    def span(i: int, low: float, high: float, places: int = 1) -> float:
        return round(low + (high - low) * _unit(digest, i), places)

    return SoilMeasurements(
        ph=span(0, 4.8, 8.4, 2),
        moisture_pct=span(1, 6, 42),
        nitrogen_ppm=span(2, 4, 60),
        phosphorus_ppm=span(3, 5, 80),
        potassium_ppm=span(4, 60, 320),
        organic_matter_pct=span(5, 0.5, 7.5, 2),
        temperature_c=span(6, 4, 28),
    )


def health(m: SoilMeasurements) -> Literal["good", "fair", "poor"]:
    problems = sum(
        (
            not 5.8 <= m.ph <= 7.5,
            m.moisture_pct < 15,
            m.nitrogen_ppm < 15,
            m.organic_matter_pct < 1.5,
        )
    )
    return "good" if problems == 0 else "fair" if problems == 1 else "poor"


def prompt_for(field_id: str, depth_cm: int, m: SoilMeasurements) -> str:
    readings = ", ".join(f"{name}={value}" for name, value in m.model_dump().items())
    return f"Field {field_id}, soil at {depth_cm} cm: {readings}. Recommend one action."


def soil_rules(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    """Thresholds over the readings in the prompt, most pressing first."""
    if output_model is not SoilAdvice:
        raise PermanentError(
            f"the soil analyzer's rules answer SoilAdvice only, not {output_model.__name__}",
            code="no-rule",
        )
    readings = {k: float(v) for k, v in re.findall(r"(\w+)=(-?\d+(?:\.\d+)?)", prompt)}
    ph = readings.get("ph", 7.0)
    moisture = readings.get("moisture_pct", 25.0)
    nitrogen = readings.get("nitrogen_ppm", 30.0)
    if moisture < 15:
        return SoilAdvice(recommendation="irrigate", note=f"moisture {moisture}% is below 15%")
    if moisture > 38:
        return SoilAdvice(recommendation="drain", note=f"moisture {moisture}% is waterlogging")
    if ph < 5.8:
        return SoilAdvice(recommendation="lime", note=f"pH {ph} is acidic; lime to raise it")
    if ph > 7.8:
        return SoilAdvice(recommendation="sulfur", note=f"pH {ph} is alkaline; sulfur lowers it")
    if nitrogen < 15:
        return SoilAdvice(recommendation="fertilize", note=f"nitrogen {nitrogen} ppm is low")
    return SoilAdvice(recommendation="none", note="readings are within range")


async def analyse(task: SoilInput, ctx: TaskContext) -> SoilOutput:
    m = measure(task.field_id, task.depth_cm)
    advice = await ctx.reason(
        prompt_for(task.field_id, task.depth_cm, m), SoilAdvice, system=SYSTEM, max_tokens=96
    )
    return SoilOutput(
        field_id=task.field_id, depth_cm=task.depth_cm, measurements=m, health=health(m),
        advice=advice,
    )  # fmt: skip


agent = Agent(
    name="soil-analyzer",
    capability="soil-analysis",
    version="1.0.0",
    input_model=SoilInput,
    output_model=SoilOutput,
    handler=analyse,
    resources=AgentResources(accelerator="cpu", concurrency=4, max_task_seconds=60),
    description="Soil readings for a field and a one-line recommendation (fleet demo).",
    rules=soil_rules,
)
