"""Stage 3: label each segment and the whole track with the paper's vocabulary -> analysis.json.

Two shapes, chosen by the backend: one `analyse_song` task (the feature backend), or - for CLAP -
one `embed_segment_batch` task per batch of segments (the flow fans them out over its workers,
each keeping the model loaded) followed by one `analyse_song` task that labels every batch.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import task

from soundsight.models.analysis.features import FeatureAnalyser
from soundsight.models.base import Analyser, SegmentEmbedder
from soundsight.prompts import load_vocabulary
from soundsight.schemas import Manifest, Segmentation
from soundsight.settings import AnalysisSettings
from soundsight.tasks.common import stage_options, written_json
from soundsight.tasks.load import read_song


def resolve_backend(settings: AnalysisSettings) -> str:
    """'auto' means CLAP when its checkpoint is on this machine, else the feature backend."""
    if settings.backend != "auto":
        return settings.backend
    try:
        from soundsight.models.analysis.clap_model import clap_available
    except ImportError:  # the optional model stack is not installed
        return "features"
    return "clap" if clap_available(settings.clap_model) else "features"


def fans_out(settings: AnalysisSettings) -> bool:
    """Whether the stage runs as per-batch embedding tasks plus one labelling task."""
    return resolve_backend(settings) == "clap"


def make_embedder(settings: AnalysisSettings) -> SegmentEmbedder:
    """The CLAP analyser (it loads its model on first use, once per worker process)."""
    from soundsight.models.analysis.clap import ClapAnalyser

    dtype = None if settings.clap_dtype == "auto" else settings.clap_dtype
    return ClapAnalyser(
        load_vocabulary(),
        model_id=settings.clap_model,
        device=settings.device,
        dtype=dtype,
        batch_size=settings.clap_batch_size,
    )


def make_analyser(settings: AnalysisSettings) -> Analyser:
    """The one-step analyser: the feature backend."""
    return FeatureAnalyser(load_vocabulary())


def analysis_identity(inputs: dict[str, Any]) -> str:
    """Backend id and vocabulary hash: what the analysis cache keys depend on."""
    settings: AnalysisSettings = inputs["settings"]
    backend = make_embedder(settings).backend_id if fans_out(settings) else FeatureAnalyser.backend_id
    return f"{backend}|vocabulary={load_vocabulary().content_hash}"


def segment_batches(segments: Manifest, settings: AnalysisSettings) -> list[tuple[int, int]]:
    """[first, last) segment index ranges, one per embedding task."""
    n = int(segments.info["scenes"])
    size = settings.clap_segments_per_task
    return [(first, min(n, first + size)) for first in range(0, n, size)]


@task(**stage_options("analyse-batch", 2, identity=analysis_identity), task_run_name="analyse-batch-{first:03d}")
def embed_segment_batch(
    song: Manifest, segments: Manifest, first: int, last: int, settings: AnalysisSettings
) -> Manifest:
    """Audio embeddings of segments [first, last) -> analysis/clap_FFF-LLL.json."""
    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    parts = make_embedder(settings).embed_segments(pcm, meta.sample_rate, segmentation.segments[first:last])
    name = f"clap_{first:03d}-{last:03d}.json"
    return written_json(
        "analyse-batch",
        song.run_dir,
        "embeddings",
        parts.to_json(),
        file=name,
        link=f"analysis/{name}",
        first=first,
        last=last,
    )


@task(**stage_options("analyse", 2, identity=analysis_identity))
def analyse_song(
    song: Manifest, segments: Manifest, settings: AnalysisSettings, embeddings: list[Manifest] | None = None
) -> Manifest:
    """Per-segment and whole-track labels, top label + score + distribution per category.

    `embeddings`: the batches of `embed_segment_batch`, when the stage fans out.
    """
    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    tempo = segmentation.tempo_bpm or 0.0
    if fans_out(settings):
        embedder = make_embedder(settings)
        parts = [embedder.embeddings_from_json(json.loads(m.path("embeddings").read_text())) for m in embeddings or []]
        analysis = embedder.label(parts, tempo)
    else:
        analysis = make_analyser(settings)(pcm, meta.sample_rate, segmentation.segments, tempo, segmentation.beats)
    return written_json(
        "analyse", song.run_dir, "analysis", analysis, backend=analysis.backend, mood=analysis.track["mood"].label
    )
