"""The small interfaces every backend implements. No Prefect here.

- `BeatTracker`: audio -> `BeatGrid` (beats, bars, phrases, sections, a confidence).
- `Analyser`: audio + segments -> `Analysis` (the paper's labels).
- `SegmentEmbedder`: an analyser that works in two steps, so the expensive one fans out:
  embed batches of segments (anywhere), then label them all at once.
- `ScriptWriter`: a `ScriptRequest` -> `ScriptResult` (scenes + raw text for the run folder).
- `ClipRenderer`: a `SceneJob` -> one clip file covering the scene.

The tables of `soundsight.backends` list, per kind, small backend objects that build these from
the settings: `AnalyserBackend`, `ScriptWriterBackend`, `SceneWriterBackend`.

Backends carry a `backend_id` string: model id and revision (or an algorithm version) that goes
into cache keys, so a different model never reuses another's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.schemas import Analysis, Scene, Segment, VisualBible
from soundsight.settings import (
    AnalysisSettings,
    ChatEndpoint,
    RenderSettings,
    ScriptSettings,
    SegmentSettings,
    Settings,
)


@dataclass(frozen=True)
class BeatGrid:
    """A song's beats and bars. Times in seconds; strengths and confidence 0..1.

    Attributes
    ----------
    tempo_bpm : float
        Median tempo, BPM.
    beats, downbeats : np.ndarray
        Seconds, increasing; every downbeat is a beat.
    confidence : float
        0..1 (the built-in tracker's: `models.audio.beats.confidence.beat_confidence`); below
        ``segment.min_confidence`` the grid is not used for cuts (`confidence.is_credible`).
    beats_per_bar : int
        3, or 4 (duple and compound bars count as 4).
    strength : np.ndarray
        Per beat, 0..1: attack strength relative to the song's 95th percentile.
    tempo_level : str
        Kept for compatibility: always ``"as_tracked"`` (octaves are decided among the hypotheses).
    variable_tempo : bool
        Whether the beats follow a local tempo curve.
    steady_tempo : bool
        Whether the beats are one straight lattice with one beat phase for the whole song.
    phase_flips : int
        How often the off-beat correction switched the half of the eighth-note lattice.
    candidates : tuple of dict
        Tempo hypotheses: ``{"bpm": float, "score": float}``, best first.
    phrase_boundaries, phrase_strength : np.ndarray
        4- and 8-bar phrase starts (seconds, on downbeats) and their strength (0..1).
    section_boundaries, section_strength : np.ndarray
        Section boundaries (seconds, on downbeats) and their strength (0..1).
    confidence_terms : dict
        The factors of `confidence` (``on_attack``, ``regularity``, ``phase``, ``tempo_clarity``).
    tracker : str
        Which tracker made the grid: its name in `soundsight.backends.BEAT_TRACKERS` ('' unknown).
    bar_phase_t : float or None
        How surely the downbeats beat the nearest rival bar phase (`beats.bars.bar_phase_t`, a t
        statistic); None when the tracker does not measure it (then the bar phase is trusted).
    """

    tempo_bpm: float
    beats: np.ndarray
    downbeats: np.ndarray
    confidence: float
    beats_per_bar: int = 4
    strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tempo_level: str = "as_tracked"
    variable_tempo: bool = False
    steady_tempo: bool = False
    phase_flips: int = 0
    candidates: tuple = ()
    phrase_boundaries: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phrase_strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    section_boundaries: np.ndarray = field(default_factory=lambda: np.zeros(0))
    section_strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence_terms: dict = field(default_factory=dict)
    tracker: str = ""
    bar_phase_t: float | None = None

    @property
    def period(self) -> float:
        """Median beat period, seconds (0.5 when unknown)."""
        return float(np.median(np.diff(self.beats))) if len(self.beats) > 2 else 0.5


class BeatTracker(Protocol):
    """Finds a song's beats and bars for the segment stage (`soundsight.backends.BEAT_TRACKERS`).

    The segment stage calls `identity` for its cache key and `track` for the grid, whatever the
    tracker: a tracker with a model loads it in `track` (and raises there when it cannot).
    """

    name: str

    def identity(self, settings: SegmentSettings) -> str:
        """What besides `settings` changes the grid, for the segment stage's cache key ('' when nothing does).

        Content, never a path: e.g. the sha256 of the checkpoint ``settings`` names.
        """
        ...

    def track(self, y: np.ndarray, sr: int, settings: SegmentSettings) -> BeatGrid:
        """The grid of the mono song `y` (float32 at `sr` Hz), ``tracker`` set to `name`.

        Raises
        ------
        SoundsightError
            The tracker cannot run as `settings` ask (e.g. `MissingCheckpointError`).
        """
        ...


class Analyser(Protocol):
    """Labels a song's segments in one call."""

    name: str
    backend_id: str

    def __call__(
        self, y: np.ndarray, sr: int, segments: list[Segment], tempo_bpm: float, beats: list[float]
    ) -> Analysis:
        """Labels for `segments` of the mono song `y` (float32 at `sr` Hz); beats in seconds."""
        ...


class SegmentEmbeddings(Protocol):
    """Embeddings of a batch of segments, as JSON for the run folder."""

    indices: list[int]

    def to_json(self) -> dict:
        """A JSON-able dict that `SegmentEmbedder.embeddings_from_json` reads back."""
        ...


class SegmentEmbedder(Protocol):
    """Labels a song in two steps, so the expensive one fans out over workers."""

    name: str
    backend_id: str

    def embed_segments(self, y: np.ndarray, sr: int, segments: list[Segment]) -> SegmentEmbeddings:
        """Embeddings of some contiguous segments of the mono song `y` (float32 at `sr` Hz)."""
        ...

    def embeddings_from_json(self, data: dict) -> SegmentEmbeddings:
        """What `embed_segments` returned, read back from its JSON."""
        ...

    def label(self, parts: list[SegmentEmbeddings], tempo_bpm: float) -> Analysis:
        """Labels for every segment and the whole track from all batches' embeddings."""
        ...


class AnalyserBackend(Protocol):
    """An entry of `soundsight.backends.ANALYSERS`: the analyser the ``analysis`` settings describe.

    Attributes
    ----------
    name : str
        Its name in the table (``analysis.backend``), also ``Analysis.backend``.
    fans_out : bool
        Whether `analyser` returns a `SegmentEmbedder`, whose embedding batches the flow fans out
        over its workers; else an `Analyser`, called once.
    hears_vocals : bool
        Whether its "prominent element: Vocals" label is evidence of singing, which the lyrics
        stage's vocal check then counts (``lyrics.clap_vocals``).
    """

    name: str
    fans_out: bool
    hears_vocals: bool

    def available(self, settings: AnalysisSettings) -> bool:
        """Whether it can run on this machine (its checkpoint is here); ``auto`` takes the first that can."""
        ...

    def analyser(self, settings: AnalysisSettings) -> Analyser | SegmentEmbedder:
        """The analyser, ready to call (weights load on first use); its `backend_id` enters cache keys."""
        ...


@dataclass(frozen=True)
class ScriptRequest:
    """Everything a script writer may use. `prompt` is the filled Block 1 (also in prompt.txt)."""

    prompt: str
    analysis: Analysis
    durations: list[float]  # seconds, one per scene
    characters: str = ""
    story_cues: str = ""
    song_hash: str = ""
    title: str = ""
    sung: list[str] = field(default_factory=list)  # per scene, the words sung in it ("" where none)
    themes: list[str] = field(default_factory=list)  # the lyrics' frequent words


@dataclass
class ScriptResult:
    """What a writer wrote: one scene per duration, the cast, the style, and its raw answer.

    bible : the run's visual identity (characters, setting, palette, lighting, camera), written
        once per run (``bible.json``); every scene's video prompt is built from it with
        `models.script.bible.scene_prompt`. None only from writers that predate it.
    """

    scenes: list[Scene]
    characters: str
    style: str
    raw_response: str = ""  # everything the writer produced, reasoning included (response.txt)
    notes: list[str] = field(default_factory=list)
    bible: VisualBible | None = None
    # What the writer could not do as asked (scenes or bible fields its model wrote unusably and
    # the template wrote instead): script.json's `warnings`, shown by the CLI and the UI.
    warnings: list[str] = field(default_factory=list)


class ScriptWriter(Protocol):
    """Writes one scene per segment."""

    name: str
    writer_id: str

    def __call__(self, request: ScriptRequest) -> ScriptResult:
        """One scene per entry of ``request.durations``."""
        ...


class ScriptWriterBackend(Protocol):
    """An entry of `soundsight.backends.SCRIPT_WRITERS`: who writes pipeline 1's script.

    Attributes
    ----------
    name : str
        Its name in the table (``script.backend``).
    concurrency_limit : str
        The Prefect global concurrency limit its requests occupy, one slot each (created with
        ``prefect gcl create NAME --limit N``; requests are not capped while it does not exist);
        empty: it sends none.
    unavailable_hint : str
        What to do when its endpoint does not answer (the error's last sentence).
    """

    name: str
    concurrency_limit: str
    unavailable_hint: str

    def writer(self, settings: ScriptSettings) -> ScriptWriter:
        """The writer, ready to call; its `writer_id` enters cache keys."""
        ...

    def endpoint(self, settings: ScriptSettings) -> ChatEndpoint | None:
        """The server it writes through, checked before any stage runs; None: it needs none."""
        ...


class SceneWriterBackend(ScriptWriterBackend, Protocol):
    """An entry of `soundsight.backends.SCENE_WRITERS`: who splits pipeline 2's story into scenes.

    Attributes
    ----------
    name : str
        Its name in the table (``script.scene_writer``).
    credit : str
        ``script.json``'s writer: the story's author and the scenes' (``lalm+llm``).
    scene_source : str
        The ``Scene.source`` of the scenes its served model wrote (the LLM writer marks them
        ``llm``; the audio-language model's are ``lalm``).
    """

    credit: str
    scene_source: str

    def script_settings(self, settings: Settings) -> ScriptSettings:
        """The ``script`` settings its writer is built from (they enter the script stage's cache key)."""
        ...


@dataclass(frozen=True)
class RenderSpec:
    """What the planner and the assembler need to know about a clip renderer.

    native_fps : frames per second the model generates at.
    frame_multiple, frame_offset : valid frame counts are ``k * frame_multiple + frame_offset``
        (Wan: 4k+1, Mochi: 6k+1, animatic: any count, i.e. 1k+0).
    max_seconds : longest clip the model renders well; the segmenter must not exceed it.
    """

    native_fps: float
    frame_multiple: int = 1
    frame_offset: int = 0
    max_seconds: float = float("inf")

    def frames_for(self, seconds: float) -> int:
        """Smallest valid frame count that covers `seconds` at the native fps."""
        need = max(1, int(np.ceil(seconds * self.native_fps - 1e-9)))
        k = int(np.ceil(max(0, need - self.frame_offset) / self.frame_multiple))
        return k * self.frame_multiple + self.frame_offset


@dataclass(frozen=True)
class SceneJob:
    """One clip to render.

    prompt : the scene sentence plus the run's overall style (the paper's mitigation).
    seconds : how long the segment lasts; the clip must cover it.
    frames : output frames the assembler will take (at `fps`), for renderers that work on the
        output grid directly.
    audio : that segment's mono samples at `sample_rate` (audio-reactive renderers use them).
    bible : the run's visual bible; the animatic draws its storyboard from it (palette, title
        card with the characters, layouts). None: a palette from `palette_hint`.
    beat_times : beats inside the segment, seconds from the clip's first frame (the animatic
        moves on them; without them it moves on onsets only).
    title_card : whether the clip opens on the bible's title card; None: scene 0 only.
    start_seconds : where the segment starts in the song, seconds (shown by the animatic).
    """

    index: int
    prompt: str
    caption: str
    negative_prompt: str
    seed: int
    seconds: float
    frames: int
    fps: int
    width: int
    height: int
    audio: np.ndarray | None = None
    sample_rate: int = ANALYSIS_SAMPLE_RATE
    palette_hint: str = ""
    bible: VisualBible | None = None
    beat_times: tuple[float, ...] = ()
    title_card: bool | None = None  # None: the renderer decides (the animatic: scene index 0)
    start_seconds: float = 0.0  # where the segment starts in the song (the animatic shows the span)


@dataclass(frozen=True)
class ClipInfo:
    """What a renderer wrote: the clip's path, frame count, frame rate and size in pixels.

    palette : when the renderer moved the clip's colours toward the bible's palette, the match's
        numbers (`PaletteMatch.info`: strength, CIEDE2000 distance before and after); else empty.
    """

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    palette: dict[str, float] = field(default_factory=dict)


class ClipRenderer(Protocol):
    """Renders one scene into one clip file."""

    name: str
    backend_id: str
    spec: RenderSpec

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Render `job` into `out_path` (written atomically)."""
        ...


@dataclass(frozen=True)
class RenderCosts:
    """What rendering has cost the worker process that just rendered a scene.

    pipelines_built : models this process has built so far (1 when it kept its model loaded, as it
        should; 0 for renderers that build none).
    gpu_seconds : seconds the scene spent inside the model (0 for renderers without one).
    """

    pipelines_built: int = 0
    gpu_seconds: float = 0.0


class RendererBackend(Protocol):
    """One ``render.backend``: what the render stage asks of it without knowing its name.

    Each entry of `soundsight.backends.RENDERERS` names one object satisfying this protocol.

    name : the ``render.backend`` value it answers to.
    gpu_workers : scenes fan out to the GPU worker pool (Dask, one worker per GPU running two scenes
        at a time -- one on the GPU, one encoding -- or the scheduler at ``render.dask_address``);
        False: on two threads of the flow's process.
    takes_reference : ``identity = "reference"`` applies: the flow first makes the run's reference
        image (the user's, or one `draw_reference` draws) and passes it to every scene as
        ``render.reference`` (`make` refuses a checkpoint that cannot take one).
    """

    name: str
    gpu_workers: bool
    takes_reference: bool

    def spec(self, settings: RenderSettings) -> RenderSpec:
        """The clips' frame rules and longest clip for these settings, without loading any model."""
        ...

    def make(self, settings: RenderSettings) -> ClipRenderer:
        """The renderer for these settings; its ``backend_id`` keys the scenes' cache.

        Cheap: loads no weights (a model is built on the first scene, and kept by the process).

        Raises
        ------
        MissingCheckpointError
            The checkpoint is not on this machine (the flow calls this before any work starts).
        """
        ...

    def draw_reference(self, settings: RenderSettings, job: SceneJob) -> np.ndarray:
        """One still image of ``job.prompt``, (height, width, 3) uint8: the run's reference image.

        Called only for backends that take a reference.
        """
        ...

    def prepare(self, settings: RenderSettings) -> None:
        """Load what rendering with these settings needs into this process (a GPU worker's model).

        Called on each GPU worker ahead of the first scene, while the flow's CPU stages run, so
        the first scene does not wait for it; nothing for backends that load nothing.
        """
        ...

    def costs(self, index: int) -> RenderCosts:
        """What rendering has cost this process, read right after it rendered scene `index`."""
        ...
