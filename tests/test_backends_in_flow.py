"""Model backends wired into the real flow: CLAP labels and a vLLM-written script, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from soundsight.schemas import Analysis, SceneScript
from tests.support import render

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def excerpt(music, tmp_path_factory) -> Path:
    """20 s of a real song: short enough to keep model backends on the CPU quick."""
    out = tmp_path_factory.mktemp("songs") / "war_of_freedom_excerpt.flac"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", "30", "-t", "20", "-i", str(music / "war_of_freedom.ogg"), str(out)],
        check=True,
    )
    return out


def test_clap_analysis_and_llm_script_through_the_flow(excerpt, tmp_path, tiny_clap_dir, vllm_server):
    groups = {
        "analysis": {"backend": "clap", "clap_model": str(tiny_clap_dir), "device": "cpu", "clap_segments_per_task": 2},
        "script": {"backend": "llm", "llm_base_url": vllm_server, "llm_output": "structured", "max_tokens": 1024},
        "render": {"width": 160, "height": 96},
    }
    video, states = render(excerpt, tmp_path, **groups)
    run_dir = video.parent
    analysis = Analysis.model_validate_json((run_dir / "analysis.json").read_text())
    assert analysis.backend == "clap" and str(tiny_clap_dir.name) in analysis.backend_id
    script = SceneScript.model_validate_json((run_dir / "script.json").read_text())
    segments = json.loads((run_dir / "segments.json").read_text())["segments"]
    assert len(script.scenes) == len(segments)
    assert script.writer == "llm" or script.writer_id.startswith("openai-chat:")
    assert (run_dir / "response.txt").read_text().strip()
    assert all(state == "Completed" for state in states.values()), states
    n_batches = -(-len(segments) // 2)
    assert sum(name.startswith("analyse-batch") for name in states) == n_batches, states
    assert len(list((run_dir / "analysis").glob("clap_*.json"))) == n_batches

    # Same settings again: the served model id and prompt hash match, nothing recomputes.
    _, again = render(excerpt, tmp_path, **groups)
    assert all(state == "Cached" for state in again.values()), again


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
