"""Stage 3: label each segment and the whole track with the paper's vocabulary -> analysis.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, task

from models.audio_features import FeatureAnalyser
from models.base import Analyser
from prompts import load_vocabulary
from soundsight.media import write_json_atomic
from soundsight.schemas import Manifest, Segmentation
from soundsight.settings import AnalysisSettings
from tasks.common import stage_options, written
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


def segment_batches(segments: Manifest, settings: AnalysisSettings) -> list[tuple[int, int]]:
    """[first, last) segment index ranges, one per CLAP embedding task."""
    n = int(segments.info["scenes"])
    size = settings.clap_segments_per_task
    return [(first, min(n, first + size)) for first in range(0, n, size)]


@task(**stage_options("analyse-batch", 1, identity=analysis_identity), task_run_name="analyse-batch-{first:03d}")
def embed_segment_batch(song: Manifest, segments: Manifest, first: int, last: int, settings: AnalysisSettings) -> Manifest:
    """CLAP audio embeddings of segments [first, last) -> analysis/clap_FFF-LLL.json.

    Runs wherever the task runner puts it; the model is loaded once per worker process.
    """
    from models.clap import ClapAnalyser

    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    analyser = make_analyser(settings)
    assert isinstance(analyser, ClapAnalyser)
    parts = analyser.embed_segments(pcm, meta.sample_rate, segmentation.segments[first:last])
    rel = f"analysis/clap_{first:03d}-{last:03d}.json"
    write_json_atomic(song.path("song").parent / rel, parts.to_json())
    return written("analyse-batch", song.run_dir, {"embeddings": rel}, first=first, last=last)


@task(**stage_options("analyse", 1, identity=analysis_identity))
def analyse_song(
    song: Manifest, segments: Manifest, settings: AnalysisSettings, embeddings: list[Manifest] | None = None
) -> Manifest:
    """Per-segment and whole-track labels, top label + score + distribution per category.

    `embeddings`: the CLAP batches from `embed_segment_batch`, when the analysis fanned out.
    """
    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    analyser = make_analyser(settings)
    tempo = segmentation.tempo_bpm or 0.0
    if embeddings:
        import json

        from models.clap import SegmentEmbeddings

        parts = [SegmentEmbeddings.from_json(json.loads(m.path("embeddings").read_text())) for m in embeddings]
        analysis = analyser.label(parts, tempo)
    else:
        analysis = analyser(pcm, meta.sample_rate, segmentation.segments, tempo, segmentation.beats)
    write_json_atomic(song.path("song").parent / "analysis.json", analysis)
    return written("analyse", song.run_dir, {"analysis": "analysis.json"}, backend=analysis.backend,
                   mood=analysis.track["mood"].label)


def analyse(stage: Callable[[Task], Task], song: Manifest, segments: Manifest, settings: AnalysisSettings) -> Manifest:
    """The analyse stage as the flow runs it: one task; with CLAP, first one embedding task per
    batch of segments (fanned out over the flow's workers, each keeping the model loaded), then
    one labelling task over all batches. `stage` configures each task for the run."""
    embeddings = None
    if resolve_backend(settings) == "clap":
        batches = [stage(embed_segment_batch).submit(song, segments, first, last, settings)
                   for first, last in segment_batches(segments, settings)]
        embeddings = [batch.result() for batch in batches]
    return stage(analyse_song)(song, segments, settings, embeddings)
