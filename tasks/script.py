"""Stage 4: the paper's prompt (Block 1) and a scene-per-segment script.

Writes prompt.txt (what an LLM is asked), response.txt (everything it answered, reasoning
included), script.json and script.txt (the paper's "BEGIN SCRIPT / SCENE #:" format).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.concurrency.sync import concurrency

from soundsight.media import write_json_atomic, write_text_atomic
from soundsight.models.base import ScriptRequest, ScriptWriter
from soundsight.models.script.template import TemplateScriptWriter
from soundsight.prompts import script_prompt, template_hash
from soundsight.schemas import Analysis, Manifest, SceneScript, Segmentation
from soundsight.settings import ScriptSettings
from soundsight.tasks.common import stage_folder, stage_options, written
from soundsight.tasks.load import read_song

LLM_CONCURRENCY_LIMIT = "vllm"


def make_writer(settings: ScriptSettings) -> ScriptWriter:
    """The writer `settings.backend` names (the LLM falls back on the template writer)."""
    if settings.backend == "llm":
        from soundsight.models.script.llm import LLMScriptWriter

        return LLMScriptWriter(settings, fallback=TemplateScriptWriter())
    return TemplateScriptWriter()


def check_endpoint(settings: ScriptSettings) -> None:
    """Fail in seconds, before any stage runs, when the LLM endpoint the run needs is down.

    Raises
    ------
    LLMUnavailableError
        One line naming the URL.
    """
    if settings.backend == "llm":
        from soundsight.models.script.chat import ChatClient

        ChatClient(settings.llm_base_url, settings.llm_api_key).check_reachable()


def script_identity(inputs: dict[str, Any]) -> str:
    """Writer id and prompt template hash: what the script cache key depends on."""
    settings: ScriptSettings = inputs["settings"]
    if settings.backend == "llm":
        return f"{make_writer(settings).writer_id}|template={template_hash()}"
    return f"{TemplateScriptWriter.writer_id}|template={template_hash()}"


def build_prompt(analysis: Analysis, durations: list[float], settings: ScriptSettings) -> str:
    """The paper's Block 1 prompt filled with this run's labels and durations."""
    return script_prompt(
        track_sentences=[label.sentence() for label in analysis.track.values()],
        segment_sentences=[[label.sentence() for label in seg.labels.values()] for seg in analysis.segments],
        durations=durations,
        visual_sentences=[label.sentence() for label in analysis.visual.values()],
        characters=settings.characters,
        story_cues=settings.story_cues,
    )


def script_text(script: SceneScript) -> str:
    """The script in the paper's format (Block 3)."""
    lines = ["BEGIN SCRIPT", ""]
    for scene in script.scenes:
        lines += [f"SCENE {scene.index + 1}:", scene.description, ""]
    return "\n".join(lines + ["END SCRIPT", ""])


@task(**stage_options("script", 2, identity=script_identity, retries=2, retry_delay_seconds=5))
def write_script(song: Manifest, segments: Manifest, analysis: Manifest, settings: ScriptSettings) -> Manifest:
    """prompt.txt, response.txt, script.json and script.txt."""
    meta, _ = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text())
    durations = [round(s.duration, 2) for s in segmentation.segments]
    prompt = build_prompt(labels, durations, settings)

    writer = make_writer(settings)
    request = ScriptRequest(
        prompt=prompt,
        analysis=labels,
        durations=durations,
        characters=settings.characters,
        story_cues=settings.story_cues,
        song_hash=meta.content_hash,
        title=meta.title,
    )
    if settings.backend == "llm":
        # The global concurrency limit "vllm" (create it with `prefect gcl create vllm --limit N`)
        # caps parallel requests across every run and worker; without it, requests are not capped.
        with concurrency(LLM_CONCURRENCY_LIMIT, occupy=1):
            result = writer(request)
    else:
        result = writer(request)
    if len(result.scenes) != len(durations):
        raise RuntimeError(f"{writer.name} wrote {len(result.scenes)} scenes for {len(durations)} segments")
    script = SceneScript(
        writer=writer.name,
        writer_id=writer.writer_id,
        title=meta.title or meta.slug,
        characters=result.characters,
        style=result.style,
        scenes=result.scenes,
    )

    folder = stage_folder(song.run_dir, "script")
    names = {"prompt": "prompt.txt", "response": "response.txt", "script": "script.json", "script_text": "script.txt"}
    write_text_atomic(folder / names["prompt"], prompt + "\n")
    write_text_atomic(
        folder / names["response"],
        result.raw_response or "(written by the embedded template writer: no model response)\n",
    )
    write_json_atomic(folder / names["script"], script)
    write_text_atomic(folder / names["script_text"], script_text(script))
    files = {name: folder / file for name, file in names.items()}
    return written("script", song.run_dir, files, links=names, writer=writer.name, scenes=len(script.scenes))
