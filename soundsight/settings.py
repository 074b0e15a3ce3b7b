"""All of soundsight's settings in one pydantic model.

One source of truth: the CLI builds its flags from these fields, the Prefect flow takes
`Settings` as its parameter (so the UI renders it as a validated form), and environment
variables override defaults with the `SOUNDSIGHT_` prefix and `__` between group and field
(e.g. ``SOUNDSIGHT_RENDER__BACKEND=wan``).

Each stage reads only its own group; that group is also what enters the stage's cache key,
so changing, say, ``render.fps`` recomputes rendering and assembly and nothing before them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, TypedDict, get_args

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from soundsight.backends import ANALYSERS, BEAT_TRACKERS, RENDERERS, SCENE_WRITERS, SCRIPT_WRITERS
from soundsight.environment import declared_variables

Stage = Literal["load", "segment", "lyrics", "analyse", "story", "script", "render", "assemble"]
STAGES: tuple[str, ...] = get_args(Stage)  # in pipeline order


class Operational:
    """Marks a field that steers *how* a stage runs but cannot change what it produces.

    ``Annotated[str, OPERATIONAL]``: such a field stays out of cache keys (`soundsight.cache`), so
    moving a run to another GPU or raising a timeout reuses every cached result.
    """

    def __repr__(self) -> str:
        return "OPERATIONAL"


OPERATIONAL = Operational()


def backend_name(table: dict[str, str], *choices: str) -> object:
    """A setting naming one backend of `table` (`soundsight.backends`), or one of `choices` (e.g. "auto").

    Checked against the table as it is when the value is validated, and offered to the UI form as
    a drop-down of the same names, so a backend added to its table is a valid setting at once.
    """

    def one_of(value: str) -> str:
        names = [*choices, *table]
        if value not in names:
            raise ValueError(f"must be one of {', '.join(names)}; got {value!r}")
        return value

    def enum(schema: dict) -> None:
        schema["enum"] = [*choices, *table]

    return Annotated[str, AfterValidator(one_of), Field(json_schema_extra=enum)]


class ChatEndpoint(TypedDict):
    """Where a chat client connects: keyword arguments of ``soundsight.models.script.chat.ChatClient``.

    Attributes
    ----------
    base_url : str
        The OpenAI-compatible endpoint.
    api_key : str
        Sent as the bearer token.
    model : str
        Served model name; empty: the first one the server lists.
    timeout_seconds : float
        Longest wait for one answer, seconds.
    """

    base_url: str
    api_key: str
    model: str
    timeout_seconds: float


class SegmentSettings(BaseModel):
    """How the song is cut into scenes (the paper's section 3.3.1)."""

    mode: Literal["random", "rule_based"] = Field(
        "rule_based",
        description="random: seeded 4-8 s cuts; rule_based: cut on spectral change, "
        "after a number of beats, or at the maximum length.",
    )
    beat_snap: bool = Field(True, description="Move each cut onto the nearest beat (preferring downbeats).")
    seed: int = Field(0, description="Seed for the random mode.")
    min_seconds: float = Field(4.0, gt=0.5, description="Shortest segment, seconds.")
    max_seconds: float = Field(7.0, gt=1.0, description="Longest segment, seconds (the paper's 7 s cap).")
    random_max_seconds: float = Field(8.0, gt=1.0, description="Longest segment in random mode, seconds.")
    beats_per_cut: int = Field(12, ge=1, description="rule_based: cut after this many beats since the last cut.")
    novelty_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="rule_based: a spectral-change peak counts when its normalised novelty "
        "exceeds this (0 = any change, 1 = only the song's largest change).",
    )
    snap_tolerance_seconds: float = Field(
        0.35,
        ge=0.0,
        description="beat_snap: furthest a cut may move to reach a beat, seconds (or one beat, whichever is larger).",
    )
    prefer_line_starts: bool = Field(
        False,
        description="Move cuts onto the start of a sung line within a bar where the length bounds allow (needs "
        "lyrics: the lyrics stage then runs before segmentation); such cuts have reason lyric_line.",
    )
    planner: Literal["auto", "joint", "greedy"] = Field(
        "auto",
        description="beat_snap: joint places all cuts at once on beats, preferring downbeats, 4/8-bar phrase "
        "starts and section boundaries within the length rules; greedy moves each cut to a nearby beat as it is made; "
        "auto: joint when the tracker's confidence reaches joint_confidence, else greedy.",
    )
    joint_confidence: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="planner=auto: the tracker confidence from which bar lines are trusted enough to place cuts on "
        "them (below it a grid may be half a beat off in places, where downbeat-seeking cuts would be off too).",
    )
    beat_tracker: backend_name(BEAT_TRACKERS) = Field(
        "librosa",
        description="librosa: the built-in tracker (CPU, no weights); beat_this: the learned beat-this model "
        "(needs `beat_checkpoint` and the beat-this package).",
    )
    beat_checkpoint: str = Field(
        "", description="beat_this: path of a downloaded beat-this checkpoint file (e.g. final0.ckpt)."
    )
    min_confidence: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="beat_snap: below this tracker confidence (0..1) no grid is credible and the cuts stay the "
        "paper's unsnapped ones.",
    )
    warn_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Below this tracker confidence (0..1) the run warns that cuts may sit off the beat in places.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> SegmentSettings:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be below max_seconds ({self.max_seconds})")
        if self.min_seconds >= self.random_max_seconds:
            raise ValueError("min_seconds must be below random_max_seconds")
        return self


class AnalysisSettings(BaseModel):
    """Which backend labels the audio with the paper's vocabulary."""

    backend: backend_name(ANALYSERS, "auto") = Field(
        "auto",
        description="features: librosa descriptors (no weights); clap: LAION-CLAP zero-shot; "
        "auto: clap when its checkpoint is available locally, else features.",
    )
    clap_model: str = Field("laion/larger_clap_music", description="CLAP checkpoint: hub id or local directory.")
    clap_batch_size: Annotated[int, OPERATIONAL] = Field(16, ge=1, description="Audio windows per CLAP forward pass.")
    clap_segments_per_task: Annotated[int, OPERATIONAL] = Field(
        32,
        ge=1,
        description="CLAP: segments per analysis task; tasks fan out across workers that keep the model loaded.",
    )
    clap_dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="CLAP weights' dtype; auto: float16 on CUDA, float32 on CPU."
    )
    device: Annotated[str, OPERATIONAL] = Field(
        "auto", description="torch device for model backends: auto, cpu, cuda, cuda:1 ..."
    )


# CTranslate2's compute types (weights are converted to the type named when the model loads).
WhisperComputeType = Literal[
    "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32"
]


class LyricsSettings(BaseModel):
    """Songs with words: vocal check, transcription (Whisper), lyrics files beside the song."""

    mode: Literal["auto", "always", "off"] = Field(
        "auto",
        description="auto: an .lrc beside the song, else transcribe when the vocal check finds vocals; "
        "always: transcribe the whole song whatever the check says; off: no lyrics.",
    )
    model: str = Field(
        "",
        description="Whisper: empty = the tiny.en installed with soundsight; else a CTranslate2 Whisper (folder, or "
        "hub id in the local cache, e.g. Systran/faster-whisper-large-v3) or a transformers one (e.g. "
        "openai/whisper-large-v3-turbo), converted once into soundsight's cache. Never downloaded.",
    )
    language: str = Field("", description="Language code of the words (e.g. en); empty: detected.")
    num_beams: int = Field(1, ge=1, le=8, description="Beam width (1 = greedy).")
    max_new_tokens: int = Field(
        160, ge=16, le=440, description="Longest transcription per 30 s window, tokens (caps runaway decoding)."
    )
    vocal_threshold: float = Field(
        0.9, gt=0.0, lt=1.0, description="Vocal check: a 1 s window is vocal at or above this probability."
    )
    track_min_fraction: float = Field(
        0.10, ge=0.0, le=1.0, description="Vocal check: the song has vocals when at least this share of it is vocal."
    )
    segment_min_fraction: float = Field(
        0.2, ge=0.0, le=1.0, description="Vocal check: a segment has vocals when at least this share of it is vocal."
    )
    clap_vocals: bool = Field(
        True, description="Also count segments whose CLAP prominent element is Vocals (when CLAP labels exist)."
    )
    silero_vad: bool = Field(
        True,
        description="Vocal check: also count 1 s windows where Silero VAD (bundled with faster-whisper) hears speech "
        "in half the frames; it only adds vocal windows.",
    )
    device: Annotated[str, OPERATIONAL] = Field("auto", description="Whisper's device: auto, cpu, cuda, cuda:1 ...")
    compute_type: WhisperComputeType = Field(
        "auto", description="Whisper's CTranslate2 compute type; auto: int8 on CPU, float16 on CUDA."
    )

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not (value.replace("_", "").isalpha() and len(value) <= 16):
            raise ValueError(f"must be a language code such as 'en' or 'french', got {value!r}")
        return value


class ScriptSettings(BaseModel):
    """Who writes the scene-per-segment script, and what the prompt asks for."""

    backend: backend_name(SCRIPT_WRITERS) = Field(
        "template", description="template: deterministic writer (no weights); llm: an OpenAI-compatible server."
    )
    characters: str = Field(
        "",
        description="Characters to feature, e.g. 'a red fox with a white-tipped tail'. Empty: chosen from the music.",
    )
    story_cues: str = Field("", description="Extra instructions for the story (the paper's additional_prompt).")
    llm_base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint.")
    llm_api_key: Annotated[str, OPERATIONAL] = Field(
        "EMPTY", description="API key for the endpoint (vLLM accepts any)."
    )
    llm_model: str = Field("", description="Served model name; empty: the first one the server lists.")
    llm_output: Literal["free_text", "structured"] = Field(
        "structured", description="free_text: the paper's BEGIN SCRIPT/SCENE #: parsing; structured: JSON schema."
    )
    temperature: float = Field(0.6, ge=0.0, le=2.0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(
        0.95, gt=0.0, le=1.0, description="Nucleus sampling: keep the most likely tokens up to this probability."
    )
    max_tokens: int = Field(4096, ge=16, description="Longest answer, tokens (reasoning included).")
    seed: int = Field(0, description="Sampling seed; each re-ask adds one.")
    timeout_seconds: Annotated[float, OPERATIONAL] = Field(
        600.0, gt=0, description="Longest wait for one answer, seconds."
    )
    repair_attempts: int = Field(2, ge=0, description="Re-asks after an unusable answer before falling back.")
    scene_writer: backend_name(SCENE_WRITERS) = Field(
        "lalm",
        description="Pipeline 2 (pipeline=lalm): who splits the story into one scene per segment. "
        "lalm: the audio-language model itself (a text request to lalm.base_url); llm: the LLM at "
        "llm_base_url (the paper's reasoning LLM). Sampling, output mode and repairs: the fields above.",
    )

    def chat_endpoint(self) -> ChatEndpoint:
        """The LLM's endpoint, model and timeout."""
        return ChatEndpoint(
            base_url=self.llm_base_url,
            api_key=self.llm_api_key,
            model=self.llm_model,
            timeout_seconds=self.timeout_seconds,
        )


class LALMSettings(BaseModel):
    """The audio-language model that listens to the song and writes the story (pipeline 2)."""

    base_url: str = Field(
        "http://127.0.0.1:8001/v1", description="OpenAI-compatible endpoint that accepts input_audio parts."
    )
    api_key: Annotated[str, OPERATIONAL] = Field("EMPTY", description="API key for the endpoint (vLLM accepts any).")
    model: str = Field(
        "",
        description="Served model name; empty: the first one the server lists (e.g. Qwen/Qwen3-Omni-30B-A3B-Instruct).",
    )
    max_audio_seconds: float = Field(
        0.0,
        ge=0.0,
        description="Longest audio one request carries, seconds; 0: from the served model's row in "
        "prompts/lalm_models.toml (30 s for a model not in it).",
    )
    windowing: Literal["auto", "off"] = Field(
        "auto",
        description="auto: a song longer than the limit is described window by window (windows end on "
        "segment boundaries), then the story is written from the descriptions and an excerpt; "
        "off: the model hears only the first max_audio_seconds.",
    )
    window_seconds: float = Field(0.0, ge=0.0, description="Longest listening window, seconds; 0: the audio limit.")
    excerpt_seconds: float = Field(
        30.0,
        ge=0.0,
        description="Windowed songs: seconds of the loudest passage sent with the final story request; 0: none.",
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(
        0.9, gt=0.0, le=1.0, description="Nucleus sampling: keep the most likely tokens up to this probability."
    )
    max_tokens: int = Field(1024, ge=8, description="Longest story, tokens (reasoning included).")
    window_max_tokens: int = Field(400, ge=8, description="Longest description of one window, tokens.")
    seed: int = Field(0, description="Sampling seed (each window request adds its number).")
    timeout_seconds: Annotated[float, OPERATIONAL] = Field(
        600.0, gt=0, description="Longest wait for one answer, seconds."
    )

    def chat_endpoint(self) -> ChatEndpoint:
        """The audio-language model's endpoint, model and timeout."""
        return ChatEndpoint(
            base_url=self.base_url, api_key=self.api_key, model=self.model, timeout_seconds=self.timeout_seconds
        )


class RenderSettings(BaseModel):
    """How each scene becomes a clip."""

    backend: backend_name(RENDERERS) = Field(
        "animatic", description="animatic: audio-reactive storyboard on the CPU; wan/mochi: text-to-video on GPUs."
    )
    model: str = Field("", description="Checkpoint (hub id or local directory); empty: the backend's default.")
    width: int = Field(640, ge=16, le=4096, description="Output width, pixels.")
    height: int = Field(360, ge=16, le=4096, description="Output height, pixels.")
    fps: int = Field(24, ge=1, le=120, description="Output frame rate, frames per second.")
    seed: int = Field(0, description="Run seed; each scene's seed derives from it and the scene index.")
    steps: int = Field(50, ge=1, description="Denoising steps (diffusion backends).")
    guidance_scale: float = Field(5.0, ge=0.0, description="Classifier-free guidance (diffusion backends).")
    negative_prompt: str = Field(
        "blurry, distorted faces, extra limbs, text, watermark, low quality, flicker",
        description="What every scene should avoid (diffusion backends).",
    )
    dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Weights' dtype (diffusion backends)."
    )
    device: Annotated[str, OPERATIONAL] = Field(
        "auto", description="torch device for diffusion backends: auto, cpu, cuda, cuda:1 ..."
    )
    cpu_offload: bool = Field(False, description="Model CPU offload (diffusion backends).")
    vae_tiling: bool = Field(False, description="Tiled VAE decode (diffusion backends).")
    palette_strength: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Diffusion backends: how far each clip's dominant colours move toward the bible's palette "
        "(CIELAB); 0: off. The animatic draws in the palette already.",
    )
    title_seconds: float = Field(
        1.5, ge=0.0, description="Animatic: seconds the title card (the bible's characters) opens scene 1; 0: none."
    )
    captions: Literal["off", "soft", "burned"] = Field(
        "off",
        description="Sung-line captions in video.mp4 when the song has lyrics: soft (a subtitle track players "
        "can switch on), burned (karaoke lines drawn into the picture; re-encodes the video) or off.",
    )
    model_width: int = Field(
        0, ge=0, description="Size the diffusion model renders at, pixels; 0: the backend's default."
    )
    model_height: int = Field(
        0, ge=0, description="Size the diffusion model renders at, pixels; 0: the backend's default."
    )
    attention_backend: str = Field("", description="diffusers attention backend (e.g. 'flash'); empty: default SDPA.")
    transformer_cache: Literal["", "fbc", "pab"] = Field(
        "",
        description="diffusers caching hook: fbc = First Block Cache, pab = Pyramid Attention Broadcast (faster, lossy).",
    )
    cache_threshold: float = Field(0.05, ge=0.0, description="First Block Cache threshold.")
    compile: bool = Field(False, description="torch.compile the transformer's blocks (about 13 s once per worker).")
    compile_mode: Literal["auto", "off", "default", "max-autotune-no-cudagraphs", "reduce-overhead"] = Field(
        "auto",
        description="Regional torch.compile of the diffusion transformer: auto = 'default' mode on CUDA workers "
        "(compiled once per worker), none on CPU unless compile is set; off = never; or a torch.compile mode.",
    )
    quantization: Literal["", "fp8"] = Field(
        "",
        description="fp8: FP8 weights and activations for the transformer's linear layers (torchao, Hopper or "
        "newer GPUs; lossy). Empty: bfloat16.",
    )
    quality: Literal["final", "draft"] = Field(
        "final",
        description="final: the checkpoint as trained (steps, guidance_scale); draft: a step/CFG-distilled LoRA "
        "fused into the transformer, draft_steps steps without classifier-free guidance (~10x faster).",
    )
    draft_lora: str = Field(
        "",
        description="Draft LoRA: a .safetensors file, a folder, a hub id, or 'org/repo/path/in/repo.safetensors' "
        "(two, comma-separated, for two-expert models: high-noise,low-noise). Empty: the public step-distill LoRA "
        "that fits the checkpoint. Never downloaded: from a local path or the Hugging Face cache.",
    )
    draft_steps: int = Field(4, ge=1, description="Denoising steps in draft quality (no classifier-free guidance).")
    final_scenes: list[int] = Field(
        default_factory=list,
        description="Scene indices rendered in final quality whatever 'quality' says (re-render chosen scenes "
        "of a draft run; the other scenes stay cached).",
    )
    identity: Literal["text", "reference"] = Field(
        "text",
        description="text: the character lives in the prompt only; reference: every scene is conditioned on "
        "the 'reference' image (needs a Wan VACE checkpoint).",
    )
    # A path: the renderer's identity carries the image's content hash instead.
    reference: Annotated[str, OPERATIONAL] = Field(
        "", description="Reference image (PNG/JPEG) for identity='reference'."
    )
    dask_address: Annotated[str, OPERATIONAL] = Field(
        "",
        description="Dask scheduler of the GPU workers: tls://host:8786 across machines, its certificates in Dask's "
        "configuration (docs/video.md), tcp:// only on this machine; empty: a local cluster, one worker per GPU.",
    )

    @model_validator(mode="after")
    def _frame_sizes(self) -> RenderSettings:
        # H.264 in 4:2:0 (what every player plays) needs even sizes: refuse here, not 30 s later in ffmpeg.
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 2:
                raise ValueError(f"{name} must be even for H.264 video, got {value} (use {value - 1} or {value + 1})")
        return self


FOLDER_NAME_BYTES = 255  # the longest file or folder name Linux filesystems take (NAME_MAX)


class OutputSettings(BaseModel):
    """Where results go."""

    # No angle brackets in descriptions: the UI's form renders them as markup and drops "<slug>".
    runs_dir: Path = Field(
        Path("runs"), description="Each song gets a folder in runs_dir named SLUG-HASH8 (its title, its audio's hash)."
    )
    run_name: str = Field("", description="The run folder's name inside runs_dir (one folder name); empty: SLUG-HASH8.")
    force: Annotated[list[Stage], OPERATIONAL] = Field(
        default_factory=list, description="Stages to recompute even when cached (comma-separated on the command line)."
    )

    @field_validator("run_name")
    @classmethod
    def _one_folder_name(cls, value: str) -> str:
        # A run folder lives inside runs_dir: "../x", "/abs" or "a/b" would write elsewhere.
        if value and (value in (".", "..") or "/" in value or "\\" in value or value.startswith(".") or "\0" in value):
            raise ValueError(
                f"must be a single folder name inside runs_dir (no '/', not starting with '.'), got {value!r}"
            )
        if not value.isprintable():  # a newline or an escape sequence in a folder name, a log line, a terminal
            raise ValueError(f"must be printable (no newline or control characters), got {value!r}")
        if len(value.encode()) > FOLDER_NAME_BYTES:
            raise ValueError(
                f"must be at most {FOLDER_NAME_BYTES} bytes long (a folder name), got {len(value.encode())}"
            )
        return value


class Settings(BaseSettings):
    """Everything a render run can be told. Env vars: SOUNDSIGHT_GROUP__FIELD, e.g. SOUNDSIGHT_RENDER__FPS."""

    model_config = SettingsConfigDict(
        env_prefix="SOUNDSIGHT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    pipeline: Literal["clap", "lalm"] = Field(
        "clap",
        description="clap: labels -> script (the paper's pipeline 1); lalm: an audio-language model "
        "listens to the song and writes a story, which is split into scenes (the paper's pipeline 2).",
    )
    pipeline_2_analysis: bool = Field(
        False,
        description="pipeline=lalm: also run the analyse stage (analysis.json) and give its labels to the "
        "scene writer. Pipeline 1 always runs it.",
    )
    segment: SegmentSettings = Field(default_factory=SegmentSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    lyrics: LyricsSettings = Field(default_factory=LyricsSettings)
    script: ScriptSettings = Field(default_factory=ScriptSettings)
    lalm: LALMSettings = Field(default_factory=LALMSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)


def unknown_environment_variables(environ: dict[str, str] | None = None) -> list[str]:
    """``SOUNDSIGHT_*`` variables that name no setting (a typo such as ``SOUNDSIGHT_RENDER__FPSS``).

    pydantic-settings ignores them silently; the CLI and the flow warn about each. The variables
    that are not settings are known from their declarations (`soundsight.environment`).
    """
    environ = dict(os.environ if environ is None else environ)
    known = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            known |= {f"SOUNDSIGHT_{name}__{sub}".upper() for sub in group.model_fields}
        known.add(f"SOUNDSIGHT_{name}".upper())
    return sorted(
        key
        for key in environ
        if key.upper().startswith("SOUNDSIGHT_") and key.upper() not in known | declared_variables()
    )
