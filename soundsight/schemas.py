"""The typed, human-readable results each stage writes and the next stage reads.

Every model here is written to the run folder as indented JSON (`song.json`, `segments.json`,
`analysis.json`, `lyrics.json`, `script.json`) and the small `*Manifest` models are what Prefect persists as
task results: paths and content hashes, never media bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

CutReason = Literal["start", "novelty", "beat_count", "max_length", "random", "lyric_line", "end"]


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
    on_downbeat: bool = Field(False, description="The cut at `end` is on a detected downbeat (within half a frame).")
    on_phrase_boundary: bool = Field(
        False, description="The cut at `end` is on a detected 4- or 8-bar phrase start (within half a frame)."
    )
    on_section_boundary: bool = Field(
        False, description="The cut at `end` is on a detected section boundary (within half a frame)."
    )

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
    beat_tracker: str = Field("", description="Which tracker made the beats: librosa or beat_this.")
    cut_planner: str = Field(
        "", description="How cuts were placed: joint, greedy (snapped to beats), or unsnapped (the paper's cuts)."
    )
    grid_credible: bool | None = Field(
        None,
        description=(
            "Whether the beat grid was credible enough to snap cuts to (confidence >= min_confidence;"
            " for a steady-tempo grid, its confidence without the phase term)."
        ),
    )
    steady_tempo: bool | None = Field(
        None,
        description="The beats are one straight grid with one beat phase for the whole song (a steady tempo).",
    )
    low_confidence: bool = Field(False, description="The tracker's confidence is below warn_confidence.")
    confidence_note: str = Field("", description="What a low confidence means for this run's cuts ('' when fine).")
    bar_credible: bool | None = Field(
        None,
        description=(
            "Whether the bar lines were trusted for cuts (bar-phase t >= the threshold); false: cuts are on"
            " beats, not aimed at the downbeats listed (which may be a beat off). None: no bar lines."
        ),
    )
    bar_phase_t: float | None = Field(
        None, description="How surely the downbeats beat the nearest rival bar phase (t statistic; None: not measured)."
    )
    bar_note: str = Field("", description="What an uncertain bar phase means for this run's cuts ('' when fine).")
    confidence_terms: dict[str, float] = Field(
        default_factory=dict, description="Factors of beat_confidence: on_attack, regularity, phase, tempo_clarity."
    )
    phrase_boundaries: list[float] = Field(default_factory=list, description="Detected 4/8-bar phrase starts, seconds.")
    section_boundaries: list[float] = Field(default_factory=list, description="Detected section boundaries, seconds.")


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
        "model of pipeline 2); fallback: the template writer, for a scene the model did not write or wrote "
        "unusably (the script's warnings say why).",
    )


class SceneScript(BaseModel):
    """`script.json`: one scene per segment."""

    writer: str
    writer_id: str
    title: str = ""
    characters: str = ""
    style: str = Field("", description="Visual guidelines appended to every scene's video prompt.")
    scenes: list[Scene]
    warnings: list[str] = Field(
        default_factory=list,
        exclude_if=lambda warnings: not warnings,  # a script without any is written as before
        description="What the writer could not do as asked, e.g. scenes a served model wrote unusably, written "
        "by the template writer instead (those scenes have source 'fallback'); the CLI and the UI show them.",
    )


LyricsSource = Literal["none", "lrc", "txt-aligned", "txt-spread", "transcription"]
WordTiming = Literal["given", "transcribed", "matched", "replaced", "interpolated", "spread"]


class LyricWord(BaseModel):
    """One sung word (or, from an enhanced LRC, one syllable) with its time span."""

    text: str
    start: float = Field(description="Seconds from the song's start.")
    end: float = Field(description="Seconds; >= start.")
    how: WordTiming = Field(
        "given",
        description="Where its times come from: given (an LRC), transcribed (Whisper), matched / replaced / "
        "interpolated (a .txt aligned to a transcription), spread (a .txt laid over the vocal regions).",
    )
    sep: str = Field(" ", description="What follows it inside its line: ' ', or '' for a syllable of a longer word.")


class LyricLine(BaseModel):
    """One sung line."""

    text: str
    start: float = Field(description="Seconds.")
    end: float = Field(description="Seconds; >= start.")
    words: list[LyricWord] = Field(default_factory=list, description="Empty when only line times are known.")
    matched: float | None = Field(
        None, description="A .txt aligned to a transcription: share of its words the transcription matched, 0..1."
    )


class LyricSegment(BaseModel):
    """What is sung in one segment (scene): the words whose midpoint falls inside it."""

    index: int
    start: float = Field(description="Seconds.")
    end: float = Field(description="Seconds.")
    vocals: bool = Field(False, description="The vocal check's decision for this segment.")
    text: str = ""
    lines: list[int] = Field(default_factory=list, description="Indices into `Lyrics.lines` contributing words.")


class VocalCheck(BaseModel):
    """The weight-free vocal-activity detector's record (and Silero VAD's and CLAP's cues, where used)."""

    detector: str = Field(description="Detector version.")
    threshold: float = Field(description="Per-window probability at or above which a window is vocal.")
    window_seconds: float
    active_fraction: float = Field(description="Share of the song's windows that are vocal, 0..1.")
    track_min_fraction: float
    track_gate: bool = Field(description="Whether the song counts as having vocals (transcription runs).")
    regions: list[tuple[float, float]] = Field(default_factory=list, description="Vocal [start, end) seconds.")
    clap_vocal_segments: list[int] = Field(
        default_factory=list, description="Segments whose CLAP prominent element is Vocals (when given)."
    )
    speech_windows: int = Field(
        0, description="Windows Silero VAD added: speech it heard where the weight-free check heard no voice."
    )


class Lyrics(BaseModel):
    """`lyrics.json`: the song's sung lines and words, timed, and what each segment sings."""

    source: LyricsSource = Field(description="Where the lines come from ('none': no lyrics).")
    note: str = Field("", description="Why there are no lyrics, or what fell back to what.")
    duration: float = Field(description="Song length, seconds.")
    language: str = Field("", description="Language code given or detected ('' when unknown).")
    model: str = Field("", description="The Whisper that transcribed: '<model id>@<revision>' ('' if none).")
    metadata: dict[str, str] = Field(default_factory=dict, description="An LRC file's tags (ti, ar, al, ...).")
    vocals: VocalCheck | None = Field(None, description="The vocal check; None when it did not run (an .lrc, off).")
    lines: list[LyricLine] = Field(default_factory=list)
    segments: list[LyricSegment] = Field(default_factory=list)

    @property
    def words(self) -> list[LyricWord]:
        """Every word in order."""
        return [w for line in self.lines for w in line.words]


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
    editable: list[str] = Field(
        default_factory=list,
        description="Logical names a user may edit (script.json, bible.json): a change is adopted, not undone.",
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

    def problem(self) -> str:
        """Why the files are not what the stage wrote ('' when they are).

        Every file is hashed again (sha256) and compared with the hash recorded when it was
        written: a file overwritten in place, even with its size and modification time put back,
        is caught. It costs 0.08 s for a 229 s song's animatic clips and 0.8 s for 290 MB of
        video-model clips on a 2-core machine (`benchmarks/cache_check.py`).
        """
        from soundsight.media import sha256_file

        for name in sorted(self.files):
            path = self.path(name)
            if name in self.editable and path.is_file():
                continue  # the user's edit: adopted downstream (flows.stages.adopt_edits), never undone
            try:
                st = path.stat()
            except OSError:
                return f"{self.files[name]} is missing"
            if sha256_file(path) != self.hashes[name]:
                recorded = self.stats.get(name, (None,))[0]
                return f"{self.files[name]} changed since it was written ({recorded} -> {st.st_size} bytes)"
        return ""


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
