"""Model backends wired into the real flow: CLAP labels and a script written by a real LLM on vLLM, end to end."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from soundsight.models.script.content_checks import judge_scenes, prompt_wording
from soundsight.models.script.llm import LLMScriptWriter
from soundsight.schemas import Analysis, SceneScript, VisualBible
from soundsight.settings import ScriptSettings
from tests.llm_fixtures import SERVED_MODEL_NAME
from tests.support import render

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def excerpt(music, tmp_path_factory) -> Path:
    """14 s of a real song (three scenes): short enough to keep model backends on the CPU quick."""
    out = tmp_path_factory.mktemp("songs") / "war_of_freedom_excerpt.flac"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", "30", "-t", "14", "-i", str(music / "war_of_freedom.ogg"), str(out)],
        check=True,
    )
    return out


@contextlib.contextmanager
def soundsight_warnings():
    """The warnings soundsight's loggers give meanwhile (the CLI prints these; Prefect keeps them from caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("soundsight")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_clap_analysis_and_llm_script_through_the_flow(excerpt, tmp_path, tiny_clap_dir, vllm_server):
    """Pipeline 1 with CLAP labels and SmolLM2 (real weights, vLLM's CPU build) writing the script."""
    script_settings = {"backend": "llm", "llm_base_url": vllm_server, "llm_output": "structured", "max_tokens": 1024}
    groups = {
        "analysis": {"backend": "clap", "clap_model": str(tiny_clap_dir), "device": "cpu", "clap_segments_per_task": 2},
        "script": script_settings | {"repair_attempts": 1},  # one re-ask: ~30 s an answer on 2 busy cores
        "render": {"width": 160, "height": 96},
    }
    with soundsight_warnings() as warned:
        video, states = render(excerpt, tmp_path, **groups)
    run_dir = video.parent
    analysis = Analysis.model_validate_json((run_dir / "analysis.json").read_text())
    assert analysis.backend == "clap" and str(tiny_clap_dir.name) in analysis.backend_id
    script = SceneScript.model_validate_json((run_dir / "script.json").read_text())
    segments = json.loads((run_dir / "segments.json").read_text())["segments"]
    assert len(script.scenes) == len(segments)
    assert script.writer == "llm" and script.writer_id.startswith(f"openai-chat:{SERVED_MODEL_NAME}:structured:")
    response = (run_dir / "response.txt").read_text()
    assert f"===== attempt 1 of 2 | mode structured | model {SERVED_MODEL_NAME}" in response
    assert all(state == "Completed" for state in states.values()), states
    n_batches = -(-len(segments) // 2)
    assert sum(name.startswith("analyse-batch") for name in states) == n_batches, states
    assert len(list((run_dir / "analysis").glob("clap_*.json"))) == n_batches

    # What SmolLM2 wrote is judged on content: its scenes that were kept pass the checks against the
    # bible the video is drawn with; the others are the template's, and that is said in script.json,
    # response.txt, the run's warnings (which the CLI prints) and the script artifact of the UI.
    bible = VisualBible.model_validate_json((run_dir / "bible.json").read_text())
    kept = {s.index: s.description for s in script.scenes if s.source == "llm"}
    wording = prompt_wording() + "\n" + LLMScriptWriter(ScriptSettings())._json_instruction(len(segments))
    assert judge_scenes(kept, wording, bible.characters).rejected == {}, kept
    fallback = [s for s in script.scenes if s.source == "fallback"]
    assert bool(script.warnings) == bool(fallback) and all(f"warning: {w}" in response for w in script.warnings)
    assert [r.getMessage() for r in warned if r.name == "soundsight.report"] == [
        f"script: {w}" for w in script.warnings
    ]
    markdown = script_artifact(run_dir)
    assert markdown.count("> **Warning:**") == len(script.warnings)
    assert markdown.count("template writer (fallback)") == len(fallback)

    # Same settings again: the served model id and prompt hash match, nothing recomputes; the
    # warnings are said again.
    with soundsight_warnings() as warned:
        _, again = render(excerpt, tmp_path, **groups)
    assert all(state == "Cached" for state in again.values()), again
    assert [r.getMessage() for r in warned if r.name == "soundsight.report"] == [
        f"script: {w}" for w in script.warnings
    ]


def script_artifact(run_dir: Path) -> str:
    """The latest script artifact of the run (the Prefect UI's markdown)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from soundsight.flows.report import artifact_key

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(str(run_dir), "script")]))
        )
    return max(found, key=lambda a: a.created).data  # the key is the run folder's: other runs of the song share it


# --- a backend added through its table alone ---------------------------------------------------------


def test_an_analyser_added_to_its_table_labels_the_song_in_the_flow(excerpt, tmp_path, monkeypatch):
    from soundsight import backends

    monkeypatch.setitem(backends.ANALYSERS, "house", "tests.table_backends:ANALYSER")
    video, states = render(excerpt, tmp_path, analysis={"backend": "house"}, render={"width": 160, "height": 96})
    analysis = Analysis.model_validate_json((video.parent / "analysis.json").read_text())
    assert analysis.backend == "house" and analysis.backend_id == "house-features-v1"
    assert states["analyse"] == "Completed" and not any(name.startswith("analyse-batch") for name in states), states


def test_a_script_writer_added_to_its_table_writes_the_script_in_the_flow(excerpt, tmp_path, monkeypatch):
    from soundsight import backends

    monkeypatch.setitem(backends.SCRIPT_WRITERS, "house", "tests.table_backends:WRITER")
    video, states = render(excerpt, tmp_path, script={"backend": "house"}, render={"width": 160, "height": 96})
    script = SceneScript.model_validate_json((video.parent / "script.json").read_text())
    segments = json.loads((video.parent / "segments.json").read_text())["segments"]
    assert script.writer == "house" and script.writer_id == "house-writer-v1"
    assert len(script.scenes) == len(segments) and all(s.source == "writer" for s in script.scenes)
    assert states["script"] == "Completed", states
