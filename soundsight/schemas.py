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
    source: Literal["writer", "llm", "lalm", "fallback"] = Field(
        "writer",
        description="writer: the template writer; llm / lalm: a served model (lalm: the audio-language "
        "model of pipeline 2); fallback: the template writer filling a scene the model did not write.",
    )


class SceneScript(BaseModel):
    """`script.json`: one scene per segment."""

    writer: str
    writer_id: str
    title: str = ""
    characters: str = ""
    style: str = Field("", description="Visual guidelines appended to every scene's video prompt.")
    scenes: list[Scene]


class ListeningWindow(BaseModel):
    """A stretch of the song one request carries (pipeline 2), seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Length, seconds."""
        return self.end - self.start


class ListeningPlan(BaseModel):
    """How the audio-language model hears the song (pipeline 2; ``listen/plan.json``).

    Part of the story stage's cache key: the served model, the audio limit and every window.
    """

    model: str = Field(description="The served model's id (vLLM's /v1/models).")
    model_root: str = Field("", description="The served model's root (hub id or checkpoint path), when listed.")
    limit_seconds: float = Field(description="Longest audio one request carries, seconds.")
    limit_source: str = Field(description="Where the limit comes from (model table row, setting, default).")
    duration: float = Field(description="The song's length, seconds.")
    mode: Literal["whole", "windows", "truncated"] = Field(
        description="whole: one request hears the whole song; windows: one request per window, then one for "
        "the story; truncated: windowing is off and the model hears only the first limit_seconds."
    )
    windows: list[ListeningWindow] = Field(description="What each listening request carries (one for whole/truncated).")
    excerpt: ListeningWindow | None = Field(None, description="windows: the passage sent with the story request.")


class Manifest(BaseModel):
    """What a task returns to Prefect: where its files are, their content hashes and how to check them.

    A stage writes its files under ``run_dir/.stages/<stage>/<key>/`` (the folder of its cache
    key, so two settings never overwrite each other's files); `links` names the human-readable
    paths in the run folder that point at them.
    """

    stage: str
    run_dir: str
    files: dict[str, str] = Field(description="Logical name -> path relative to run_dir.")
    hashes: dict[str, str] = Field(description="Logical name -> sha256 of the file's bytes.")
    stats: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="Logical name -> (size in bytes, mtime in ns) when written."
    )
    links: dict[str, str] = Field(
        default_factory=dict, description="Logical name -> human-readable path relative to run_dir."
    )
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

    def problem(self) -> str:
        """Why the files are not what the stage wrote ('' when they are).

        Size and modification time equal to what was recorded pass at once; otherwise the bytes
        are hashed and compared with the recorded hash.
        """
        from soundsight.media import sha256_file

        for name in sorted(self.files):
            path = self.path(name)
            try:
                st = path.stat()
            except OSError:
                return f"{self.files[name]} is missing"
            if name in self.stats and (st.st_size, st.st_mtime_ns) == tuple(self.stats[name]):
                continue
            if sha256_file(path) != self.hashes[name]:
                recorded = self.stats.get(name, (None,))[0]
                return f"{self.files[name]} changed since it was written ({recorded} -> {st.st_size} bytes)"
        return ""
