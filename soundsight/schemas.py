"""The typed, human-readable results each stage writes and the next stage reads.

Every model here is written to the run folder as indented JSON (`song.json`, `segments.json`,
`analysis.json`, `script.json`) and the small `*Manifest` models are what Prefect persists as
task results: paths and content hashes, never media bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

CutReason = Literal["start", "novelty", "beat_count", "max_length", "random", "end"]


class Song(BaseModel):
    """A decoded song (`song.json`)."""

    source: str = Field(description="Path the song was read from (informational; never part of a cache key).")
    content_hash: str = Field(description="sha256 of the decoded PCM (mono float32 at sample_rate).")
    duration: float = Field(description="Seconds.")
    sample_rate: int = Field(description="Hz, of the decoded analysis audio.")
    channels_in_source: int
    codec: str = ""
    title: str = ""
    artist: str = ""
    slug: str


class Segment(BaseModel):
    """One scene's slice of the song. Segments tile [0, duration] exactly."""

    index: int
    start: float = Field(description="Seconds.")
    end: float = Field(description="Seconds.")
    start_frame: int = Field(description="Output frame on which this segment's first frame falls.")
    end_frame: int = Field(description="Exclusive: the next segment's start_frame.")
    reason: CutReason = Field(description="Why the cut at `end` was made.")
    beats: list[float] = Field(default_factory=list, description="Beat times inside the segment, seconds.")
    snapped_to: Literal["", "downbeat", "beat"] = Field(
        "",
        description="beat_snap: what the cut at `end` was moved onto ('' = not moved: snapping off, "
        "no beat within reach, or the song's end).",
    )
    snap_shift: float = Field(0.0, description="beat_snap: how far the cut at `end` moved, seconds (signed).")

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.end - self.start

    @property
    def frames(self) -> int:
        """Output frames."""
        return self.end_frame - self.start_frame


class Segmentation(BaseModel):
    """`segments.json`."""

    song_hash: str
    duration: float
    fps: int
    mode: str
    beat_snap: bool
    tempo_bpm: float | None = None
    beat_confidence: float | None = Field(None, description="Tracker's own confidence, 0..1.")
    beats: list[float] = Field(default_factory=list, description="All beat times, seconds.")
    downbeats: list[float] = Field(default_factory=list, description="Downbeat times, seconds.")
    segments: list[Segment]
    metrics: dict[str, float] | None = Field(None, description="Against a reference beats file, when present.")
    beats_per_bar: int | None = Field(
        None, description="Estimated meter: 3, or 4 (duple and compound bars count as 4)."
    )
    tempo_level: str | None = Field(
        None, description="Tempo-octave check's decision: as_tracked, half, third or double (of the tracker's tempo)."
    )
    min_seconds: float | None = Field(None, description="Shortest segment length actually enforced, seconds.")
    max_seconds: float | None = Field(
        None,
        description="Longest segment length actually enforced (mode maximum capped by the video model's clip), seconds.",
    )


class Label(BaseModel):
    """One category's answer: the top option, its score and the full distribution."""

    category: str
    name: str = Field(description="Human name of the category, e.g. 'Instrumental intensity'.")
    label: str = Field(description="The winning option sentence.")
    score: float
    distribution: dict[str, float]

    def sentence(self) -> str:
        """``<name> is <label>``: how prompts state a label."""
        return f"{self.name} is {self.label}"

    @classmethod
    def from_distribution(cls, category: str, name: str, options: Sequence[str], p) -> Label:
        """The label for probabilities `p` over `options` (same order): top option and all scores."""
        top = max(range(len(options)), key=lambda i: p[i])
        return cls(
            category=category,
            name=name,
            label=options[top],
            score=round(float(p[top]), 4),
            distribution={o: round(float(v), 4) for o, v in zip(options, p)},
        )


class SegmentLabels(BaseModel):
    """One segment's labels, by category key."""

    index: int
    labels: dict[str, Label]


class Analysis(BaseModel):
    """`analysis.json`: the same schema from every analysis backend."""

    backend: str
    backend_id: str = Field(description="Model id and revision, or the feature extractor's version.")
    vocabulary_hash: str
    track: dict[str, Label]
    visual: dict[str, Label]
    segments: list[SegmentLabels]
    descriptors: dict[str, float] = Field(default_factory=dict, description="Whole-track numbers (tempo, ...).")
    segment_descriptors: list[dict[str, float]] = Field(default_factory=list)


class Scene(BaseModel):
    """One scene of the script."""

    index: int = Field(description="0-based; the paper's SCENE numbers are index + 1.")
    description: str
    duration: float = Field(description="Seconds.")
    source: Literal["writer", "llm", "fallback"] = "writer"


class SceneScript(BaseModel):
    """`script.json`: one scene per segment."""

    writer: str
    writer_id: str
    title: str = ""
    characters: str = ""
    style: str = Field("", description="Visual guidelines appended to every scene's video prompt.")
    scenes: list[Scene]


class Manifest(BaseModel):
    """What a task returns to Prefect: where its files are and their content hashes."""

    stage: str
    run_dir: str
    files: dict[str, str] = Field(description="Logical name -> path relative to run_dir.")
    hashes: dict[str, str] = Field(description="Logical name -> sha256 of the file's bytes.")
    info: dict[str, float | int | str] = Field(default_factory=dict)

    def path(self, name: str) -> Path:
        """Absolute path of output `name`."""
        return Path(self.run_dir) / self.files[name]

    def content_hash(self) -> str:
        """One hash over this stage's outputs: what downstream cache keys depend on."""
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.hashes):
            h.update(f"{name}={self.hashes[name]};".encode())
        return h.hexdigest()

    def files_exist(self) -> bool:
        """Whether every file of the manifest is still there."""
        return all(self.path(name).is_file() for name in self.files)


HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"


class Character(BaseModel):
    """One recurring character: a name and one fixed physical description."""

    name: str = Field("", description="What the script calls them, e.g. 'Fenn'; may be empty.")
    description: str = Field(
        description="Fixed physical description, e.g. 'a lean grey wolf with pale eyes'; copied verbatim "
        "into every scene's video prompt."
    )


class PaletteColour(BaseModel):
    """One named colour of a run's palette."""

    name: str = Field(description="What prompts call it, e.g. 'storm blue'.")
    hex: str = Field(pattern=HEX_COLOUR, description="sRGB, '#rrggbb'.")

    def rgb(self) -> tuple[int, int, int]:
        """The colour as sRGB integers, 0..255."""
        return int(self.hex[1:3], 16), int(self.hex[3:5], 16), int(self.hex[5:7], 16)


class VisualBible(BaseModel):
    """`bible.json`: one visual identity for every scene of a run, written once by the script stage.

    Every scene's video prompt is built from it (`models.script.bible.scene_prompt`), the animatic
    draws its storyboard from it, and palette matching pulls each clip toward its palette.
    """

    seed: str = Field("", description="What the template choices were drawn from (the song's content hash).")
    title: str = ""
    characters: list[Character] = Field(description="Recurring characters, in order of importance.")
    setting: str = Field(description="The world every scene takes place in, one phrase.")
    places: list[str] = Field(
        default_factory=list, description="Places inside the setting that scenes move through, in story order."
    )
    palette_name: str = ""
    palette: list[PaletteColour] = Field(min_length=4, max_length=6, description="4-6 named colours.")
    lighting: str = Field(description="Lighting words shared by every scene.")
    camera: str = Field(description="Lens and camera style shared by every scene.")
    style: str = Field("", description="The run's visual guidelines as one sentence (the paper's mitigation).")
    labels: dict[str, str] = Field(
        default_factory=dict, description="The analysis labels it was derived from, by category key."
    )
