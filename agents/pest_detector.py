"""Pest detector (fleet demo): counts pests on a field and says where they are.

Detections are derived from the field id with SHA-256, so a demo is repeatable: about two
fields in five are clean (``pests == 0``), the others hold one to three clusters. Boxes are in
field coordinates, fractions of the field's extent from its west (x) and north (y) edges, so
the crop mapper can turn the infested ``zone`` into map tiles and zoom in on it.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from expediter import Agent, AgentResources, TaskContext

FieldId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Species = Literal["aphid", "armyworm", "corn-borer", "spider-mite", "thrips", "whitefly"]
Severity = Literal["none", "low", "moderate", "high"]
Unit = Annotated[float, Field(ge=0, le=1)]

_SPECIES: tuple[Species, ...] = (
    "aphid", "armyworm", "corn-borer", "spider-mite", "thrips", "whitefly",
)  # fmt: skip


class BoundingBox(BaseModel):
    """A box in field coordinates: 0..1 from the west (x) and north (y) edges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x_min: Unit
    y_min: Unit
    x_max: Unit
    y_max: Unit

    @model_validator(mode="after")
    def _ordered(self) -> BoundingBox:
        if self.x_min > self.x_max or self.y_min > self.y_max:
            raise ValueError("a box needs x_min <= x_max and y_min <= y_max")
        return self

    @property
    def area(self) -> float:
        return (self.x_max - self.x_min) * (self.y_max - self.y_min)


class PestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Detections below it are dropped (and not counted)."""


class Detection(BaseModel):
    species: Species
    count: Annotated[int, Field(ge=1)]
    confidence: Unit
    box: BoundingBox


class PestOutput(BaseModel):
    field_id: str
    pests: Annotated[int, Field(ge=0)]
    species: list[Species]
    detections: list[Detection]
    zone: BoundingBox | None
    """The union of the detections' boxes: where to zoom in; None on a clean field."""
    severity: Severity


def detect(field_id: str) -> list[Detection]:
    digest = hashlib.sha256(f"pests:{field_id}".encode()).digest()
    if digest[0] % 5 < 2:
        return []
    detections = []
    for i in range(digest[1] % 3 + 1):
        b = digest[2 + 6 * i : 8 + 6 * i]
        cx, cy = 0.1 + 0.8 * b[0] / 255, 0.1 + 0.8 * b[1] / 255
        half = 0.03 + 0.09 * b[2] / 255
        detections.append(
            Detection(
                species=_SPECIES[b[3] % len(_SPECIES)],
                count=b[4] % 15 + 1,
                confidence=round(0.4 + 0.59 * b[5] / 255, 3),
                box=BoundingBox(
                    x_min=round(max(0.0, cx - half), 4),
                    y_min=round(max(0.0, cy - half), 4),
                    x_max=round(min(1.0, cx + half), 4),
                    y_max=round(min(1.0, cy + half), 4),
                ),
            )
        )
    return detections


def union(boxes: list[BoundingBox]) -> BoundingBox | None:
    if not boxes:
        return None
    return BoundingBox(
        x_min=min(b.x_min for b in boxes),
        y_min=min(b.y_min for b in boxes),
        x_max=max(b.x_max for b in boxes),
        y_max=max(b.y_max for b in boxes),
    )


def severity(pests: int) -> Severity:
    return "none" if pests == 0 else "low" if pests < 10 else "moderate" if pests < 25 else "high"


async def find_pests(task: PestInput, ctx: TaskContext) -> PestOutput:
    kept = [d for d in detect(task.field_id) if d.confidence >= task.min_confidence]
    pests = sum(d.count for d in kept)
    return PestOutput(
        field_id=task.field_id,
        pests=pests,
        species=sorted({d.species for d in kept}),
        detections=kept,
        zone=union([d.box for d in kept]),
        severity=severity(pests),
    )


agent = Agent(
    name="pest-detector",
    capability="pest-detection",
    version="1.0.0",
    input_model=PestInput,
    output_model=PestOutput,
    handler=find_pests,
    resources=AgentResources(accelerator="cpu", concurrency=4, max_task_seconds=30),
    description="Counts pests on a field, by species, with boxes and the infested zone.",
)
