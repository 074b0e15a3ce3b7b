"""Stage 3: label each segment and the whole track with the paper's vocabulary -> analysis.json.

The backend (``soundsight.backends.ANALYSERS``) chooses between two shapes: one `analyse_song`
task (the feature backend), or - when it fans out, like CLAP - one `embed_segment_batch` task per
batch of segments (the flow fans them out over its workers, each keeping the model loaded)
followed by one `analyse_song` task that labels every batch.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import task

from soundsight.backends import AUTO_ANALYSERS
from soundsight.errors import SoundsightError
from soundsight.models import registry
from soundsight.models.base import AnalyserBackend, SegmentEmbedder
from soundsight.prompts import load_vocabulary
from soundsight.schemas import Manifest, Segmentation
from soundsight.settings import AnalysisSettings
from soundsight.tasks.common import stage_options, written_json
from soundsight.tasks.load import read_song


def analyser_backend(settings: AnalysisSettings) -> AnalyserBackend:
    """The backend ``analysis.backend`` names; ``auto``: the first of `AUTO_ANALYSERS` available here.

    A backend whose module cannot be imported (its optional model stack is not installed) is not
    available.
    """
    if settings.backend != "auto":
        return registry.load("analyser", settings.backend)
    for name in AUTO_ANALYSERS:
        try:
            backend = registry.load("analyser", name)
        except ImportError:
            continue
        if backend.available(settings):
            return backend
    raise SoundsightError(f"analysis.backend=auto: none of {', '.join(AUTO_ANALYSERS)} can run on this machine")


def fans_out(settings: AnalysisSettings) -> bool:
    """Whether the stage runs as per-batch embedding tasks plus one labelling task."""
    return analyser_backend(settings).fans_out


def analysis_identity(inputs: dict[str, Any]) -> str:
    """Backend id and vocabulary hash: what the analysis cache keys depend on."""
    analyser = analyser_backend(inputs["settings"]).analyser(inputs["settings"])
    return f"{analyser.backend_id}|vocabulary={load_vocabulary().content_hash}"


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
    embedder: SegmentEmbedder = analyser_backend(settings).analyser(settings)
    parts = embedder.embed_segments(pcm, meta.sample_rate, segmentation.segments[first:last])
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
    backend = analyser_backend(settings)
    analyser = backend.analyser(settings)
    if backend.fans_out:
        parts = [analyser.embeddings_from_json(json.loads(m.path("embeddings").read_text())) for m in embeddings or []]
        analysis = analyser.label(parts, tempo)
    else:
        analysis = analyser(pcm, meta.sample_rate, segmentation.segments, tempo, segmentation.beats)
    return written_json(
        "analyse", song.run_dir, "analysis", analysis, backend=analysis.backend, mood=analysis.track["mood"].label
    )
