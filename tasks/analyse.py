"""Stage 3: label each segment and the whole track with the paper's vocabulary -> analysis.json."""

from __future__ import annotations

from typing import Any

from prefect import task

from models.audio_features import FeatureAnalyser
from models.base import Analyser
from prompts import load_vocabulary
from soundsight.media import sha256_file, write_json_atomic
from soundsight.schemas import Manifest, Segmentation
from soundsight.settings import AnalysisSettings
from tasks.common import stage_options
from tasks.load import read_song


def resolve_backend(settings: AnalysisSettings) -> str:
    """'auto' means CLAP when its checkpoint is on this machine, else the feature backend."""
    if settings.backend != "auto":
        return settings.backend
    try:
        from models.clap import clap_available
    except ImportError:  # the optional model stack is not installed
        return "features"
    return "clap" if clap_available(settings.clap_model) else "features"


def clap_dtype(settings: AnalysisSettings) -> str | None:
    return None if settings.clap_dtype == "auto" else settings.clap_dtype


def make_analyser(settings: AnalysisSettings) -> Analyser:
    vocabulary = load_vocabulary()
    if resolve_backend(settings) == "clap":
        from models.clap import ClapAnalyser

        return ClapAnalyser(vocabulary, model_id=settings.clap_model, device=settings.device,
                            dtype=clap_dtype(settings), batch_size=settings.clap_batch_size)
    return FeatureAnalyser(vocabulary)


def analysis_identity(inputs: dict[str, Any]) -> str:
    settings: AnalysisSettings = inputs["settings"]
    vocabulary = load_vocabulary()
    if resolve_backend(settings) == "clap":
        from models.clap import clap_backend_id

        backend = clap_backend_id(settings.clap_model, device=settings.device, dtype=clap_dtype(settings))
    else:
        backend = FeatureAnalyser.backend_id
    return f"{backend}|vocabulary={vocabulary.content_hash}"


@task(**stage_options("analyse", 1, identity=analysis_identity))
def analyse_song(song: Manifest, segments: Manifest, settings: AnalysisSettings) -> Manifest:
    """Per-segment and whole-track labels, top label + score + distribution per category."""
    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    analyser = make_analyser(settings)
    analysis = analyser(pcm, meta.sample_rate, segmentation.segments, segmentation.tempo_bpm or 0.0, segmentation.beats)
    path = write_json_atomic(song.path("song").parent / "analysis.json", analysis)
    return Manifest(
        stage="analyse",
        run_dir=song.run_dir,
        files={"analysis": "analysis.json"},
        hashes={"analysis": sha256_file(path)},
        info={"backend": analysis.backend, "mood": analysis.track["mood"].label},
    )
