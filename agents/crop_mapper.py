"""Crop mapper (fleet demo): maps a field and zooms in on the zones where pests were found.

Given a field id and the pest detector's zone(s) (boxes in field coordinates), it places the
field on the map, picks the highest Web Mercator zoom at which the zones still fit in
``max_tiles`` tiles (always deeper than the zoom that shows the whole field), and scores each
tile. Location, crop and scores derive from the field id with SHA-256, so a demo is
repeatable. It stands in for a segmentation model over imagery, hence a GPU agent.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from expediter import Agent, AgentResources, TaskContext

FieldId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Crop = Literal["wheat", "maize", "barley", "soybean", "rapeseed", "sunflower"]
Unit = Annotated[float, Field(ge=0, le=1)]

_CROPS: tuple[Crop, ...] = ("wheat", "maize", "barley", "soybean", "rapeseed", "sunflower")
_MAX_ZOOM = 20
_HOTSPOT = 0.25
"""A tile whose intensity reaches this is a hotspot."""
_METRES_PER_DEGREE = 111_320.0


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


class CropInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    zones: Annotated[list[BoundingBox], Field(max_length=16)] = Field(default_factory=list)
    """The pest detector's zone(s); empty maps the whole field without zooming in."""
    max_tiles: Annotated[int, Field(ge=9, le=64)] = 16


class LatLon(BaseModel):
    lat: float
    lon: float


class Tile(BaseModel):
    z: int
    x: int
    y: int
    intensity: Unit
    """Share of the tile under an infested zone, weighted by canopy stress."""
    hotspot: bool


class HotspotSummary(BaseModel):
    count: Annotated[int, Field(ge=0)]
    peak: Tile | None
    mean_intensity: Unit
    infested_area_ha: Annotated[float, Field(ge=0)]
    infested_fraction: Unit


class CropOutput(BaseModel):
    field_id: str
    crop: Crop
    ndvi: Annotated[float, Field(ge=-1, le=1)]
    centre: LatLon
    area_ha: Annotated[float, Field(gt=0)]
    field_zoom: int
    """The zoom at which the whole field fits in at most 2 x 2 tiles."""
    zoom: int
    """The zoom of ``tiles``: deeper than ``field_zoom`` when there are zones."""
    tiles: list[Tile]
    hotspots: HotspotSummary


class _Field:
    """Where a field is: its bounds in degrees, from its id."""

    def __init__(self, field_id: str) -> None:
        d = hashlib.sha256(f"field:{field_id}".encode()).digest()
        self.digest = d
        lat = 35 + 20 * d[0] / 255
        lon = -5 + 35 * d[1] / 255
        self.width_m = 400 + 1100 * d[2] / 255
        self.height_m = 300 + 900 * d[3] / 255
        dlat = self.height_m / _METRES_PER_DEGREE
        dlon = self.width_m / (_METRES_PER_DEGREE * math.cos(math.radians(lat)))
        self.north, self.south = lat + dlat / 2, lat - dlat / 2
        self.west, self.east = lon - dlon / 2, lon + dlon / 2
        self.centre = LatLon(lat=round(lat, 6), lon=round(lon, 6))

    def bounds(self, box: BoundingBox) -> tuple[float, float, float, float]:
        """(north, south, west, east) in degrees of a box in field coordinates."""
        dlat, dlon = self.north - self.south, self.east - self.west
        return (
            self.north - box.y_min * dlat,
            self.north - box.y_max * dlat,
            self.west + box.x_min * dlon,
            self.west + box.x_max * dlon,
        )


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    """The Web Mercator (slippy map) tile holding a point."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(x, n - 1), min(y, n - 1)


def tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return lat(y), lat(y + 1), x / n * 360 - 180, (x + 1) / n * 360 - 180


def tiles_over(bounds: list[tuple[float, float, float, float]], z: int) -> set[tuple[int, int]]:
    tiles: set[tuple[int, int]] = set()
    for north, south, west, east in bounds:
        x0, y0 = tile_of(north, west, z)
        x1, y1 = tile_of(south, east, z)
        tiles.update((x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
    return tiles


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The share of box ``a`` (north, south, west, east) that ``b`` covers."""
    height = max(0.0, min(a[0], b[0]) - max(a[1], b[1]))
    width = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    area = (a[0] - a[1]) * (a[3] - a[2])
    return height * width / area if area > 0 else 0.0


def map_field(task: CropInput) -> CropOutput:
    field = _Field(task.field_id)
    whole = [(field.north, field.south, field.west, field.east)]
    field_zoom = max(z for z in range(_MAX_ZOOM + 1) if len(tiles_over(whole, z)) <= 4)
    zones = [field.bounds(box) for box in task.zones]
    if zones:
        # The deepest zoom whose tiles over the zones still fit the budget; never shallower
        # than one level below the field's own zoom.
        fitting = [
            z
            for z in range(field_zoom + 1, _MAX_ZOOM + 1)
            if len(tiles_over(zones, z)) <= task.max_tiles
        ]
        zoom = max(fitting, default=field_zoom + 1)
        cells = tiles_over(zones, zoom)
    else:
        zoom, cells = field_zoom, tiles_over(whole, field_zoom)
    tiles = []
    for x, y in sorted(cells):
        bounds = tile_bounds(x, y, zoom)
        covered = min(1.0, sum(_overlap(bounds, zone) for zone in zones))
        stress = hashlib.sha256(f"tile:{task.field_id}:{zoom}:{x}:{y}".encode()).digest()[0] / 255
        intensity = round(covered * (0.5 + 0.5 * stress), 3)
        tiles.append(Tile(z=zoom, x=x, y=y, intensity=intensity, hotspot=intensity >= _HOTSPOT))
    hot = [t for t in tiles if t.hotspot]
    area_ha = field.width_m * field.height_m / 10_000
    fraction = min(1.0, sum((b.x_max - b.x_min) * (b.y_max - b.y_min) for b in task.zones))
    return CropOutput(
        field_id=task.field_id,
        crop=_CROPS[field.digest[4] % len(_CROPS)],
        ndvi=round(0.2 + 0.6 * field.digest[5] / 255, 3),
        centre=field.centre,
        area_ha=round(area_ha, 2),
        field_zoom=field_zoom,
        zoom=zoom,
        tiles=tiles,
        hotspots=HotspotSummary(
            count=len(hot),
            peak=max(hot, key=lambda t: (t.intensity, -t.x, -t.y), default=None),
            mean_intensity=round(sum(t.intensity for t in tiles) / len(tiles), 3) if tiles else 0,
            infested_area_ha=round(area_ha * fraction, 2),
            infested_fraction=round(fraction, 4),
        ),
    )


async def map_crop(task: CropInput, ctx: TaskContext) -> CropOutput:
    return map_field(task)


agent = Agent(
    name="crop-mapper",
    capability="crop-mapping",
    version="1.0.0",
    input_model=CropInput,
    output_model=CropOutput,
    handler=map_crop,
    resources=AgentResources(accelerator="gpu", concurrency=2, max_task_seconds=120),
    description="Maps a field's crop and zooms in on pest zones: tiles and hotspots (fleet demo).",
)
