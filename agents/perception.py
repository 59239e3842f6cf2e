"""Perception: turns a field report's free text and image metadata into normalised features.

Pure code, no engine and no tools: the same input always gives the same features, cheaply, so
this stage runs on CPU with high concurrency and feeds the reasoning agent's context.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from expediter import Agent, AgentResources, TaskContext

Language = Literal["en", "fr", "es", "de", "unknown"]
Orientation = Literal["landscape", "portrait", "square"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the a an and or of to in on at is are was were be with for from this that it "
        "as by not no but have has near"
    ),
    "fr": _words(
        "le la les un une des et ou de du dans sur est sont avec pour par pas ce cette "
        "il elle au aux"
    ),
    "es": _words(
        "el la los las un una unos y o de del en es son con para por no este esta al se que"
    ),
    "de": _words(
        "der die das ein eine und oder von zu im in auf ist sind mit für nicht dem den des bei"
    ),
}
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_MAX_KEYWORDS = 8
# EXIF orientations 5-8 store the image rotated by 90 degrees: width and height swap on display.
_ROTATED = {5, 6, 7, 8}
_FORMATS = {"jpg": "jpeg", "tif": "tiff"}

ExifValue = str | int | float | bool


class ImageMeta(BaseModel):
    """What is known about a photo without its pixels."""

    model_config = ConfigDict(extra="forbid")

    width: Annotated[int, Field(gt=0, le=100_000)]
    height: Annotated[int, Field(gt=0, le=100_000)]
    format: Annotated[str, Field(min_length=1, max_length=16)] = "jpeg"
    exif: Annotated[dict[str, ExifValue], Field(max_length=64)] = Field(default_factory=dict)
    """EXIF-like tags: Make, Model, Orientation (1-8), GPSAltitude..."""
    captured_at: datetime | None = None

    @field_validator("format")
    @classmethod
    def _normalise_format(cls, value: str) -> str:
        lowered = value.strip().lower().lstrip(".")
        return _FORMATS.get(lowered, lowered)


class PerceptionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(max_length=20_000)] = ""
    image: ImageMeta | None = None


class TextFeatures(BaseModel):
    normalised: str
    """NFKC, lowercased, whitespace collapsed."""
    tokens: Annotated[int, Field(ge=0)]
    language: Language
    keywords: Annotated[list[str], Field(max_length=_MAX_KEYWORDS)]
    """The most frequent words that are not stopwords, most frequent first."""


class ImageFeatures(BaseModel):
    width: int
    height: int
    """As displayed: swapped when EXIF orientation says the image is stored rotated."""
    format: str
    aspect_ratio: Annotated[float, Field(gt=0)]
    megapixels: Annotated[float, Field(ge=0)]
    orientation: Orientation
    camera: str | None = None
    captured_at: datetime | None = None


class PerceptionOutput(BaseModel):
    text: TextFeatures
    image: ImageFeatures | None = None


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def guess_language(words: list[str]) -> Language:
    """The language whose stopwords appear most; ``unknown`` without any."""
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "unknown"  # type: ignore[return-value]


def text_features(text: str) -> TextFeatures:
    normalised = normalise(text)
    words = _WORD.findall(normalised)
    language = guess_language(words)
    stop = _STOPWORDS.get(language, frozenset())
    counts = Counter(w for w in words if len(w) > 2 and w not in stop and not w.isdigit())
    # Ties broken alphabetically, so the keywords are deterministic.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return TextFeatures(
        normalised=normalised,
        tokens=len(words),
        language=language,
        keywords=[word for word, _ in ranked[:_MAX_KEYWORDS]],
    )


def image_features(image: ImageMeta) -> ImageFeatures:
    width, height = image.width, image.height
    if image.exif.get("Orientation") in _ROTATED:
        width, height = height, width
    ratio = width / height
    orientation: Orientation = (
        "square" if abs(ratio - 1) < 0.01 else "landscape" if ratio > 1 else "portrait"
    )
    camera = " ".join(str(image.exif[tag]) for tag in ("Make", "Model") if tag in image.exif)
    return ImageFeatures(
        width=width,
        height=height,
        format=image.format,
        aspect_ratio=round(ratio, 4),
        megapixels=round(width * height / 1_000_000, 3),
        orientation=orientation,
        camera=camera or None,
        captured_at=image.captured_at,
    )


async def perceive(task: PerceptionInput, ctx: TaskContext) -> PerceptionOutput:
    return PerceptionOutput(
        text=text_features(task.text),
        image=image_features(task.image) if task.image is not None else None,
    )


agent = Agent(
    name="perception",
    capability="perception",
    version="1.0.0",
    input_model=PerceptionInput,
    output_model=PerceptionOutput,
    handler=perceive,
    resources=AgentResources(accelerator="cpu", concurrency=16, max_task_seconds=10),
    description="Normalises field-report text and image metadata into features.",
)
