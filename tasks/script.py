"""Stage 4: the paper's prompt (Block 1) and a scene-per-segment script; pipeline 2's story.

Writes prompt.txt (what an LLM is asked), response.txt (everything it answered, reasoning
included), script.json and script.txt (the paper's "BEGIN SCRIPT / SCENE #:" format).

Pipeline 2 (``pipeline=lalm``) has two cached stages here, so that changing only the scene
writer re-splits the story without listening again:

- ``story`` (`write_story`): an audio-language model hears the song as `listening_plan` says
  (whole, or window by window) and writes story.txt (+ listen/: the plan, the story prompt,
  every raw answer, one window_NN.txt per window);
- ``script`` (`write_scenes`): the story and every segment's times and beats
  (prompts/lalm_scenes.txt) go to the scene writer - the LALM itself or the pipeline-1 LLM -
  which answers with exactly one scene per segment; the same script.json as pipeline 1.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect import task
from prefect.concurrency.sync import concurrency

from soundsight.errors import SoundsightError
from soundsight.media import write_json_atomic, write_text_atomic
from soundsight.models import registry
from soundsight.models.base import SceneWriterBackend, ScriptRequest, ScriptWriterBackend
from soundsight.models.lyrics import sung_per_segment, themes
from soundsight.prompts import load_vocabulary, script_prompt, template_hash
from soundsight.schemas import Analysis, ListeningPlan, Manifest, SceneScript, Segmentation, Song, VisualBible
from soundsight.settings import ChatEndpoint, LALMSettings, ScriptSettings, Settings
from soundsight.tasks.common import stage_folder, stage_options, written
from soundsight.tasks.load import read_song
from soundsight.tasks.lyrics import read_lyrics


def script_writer(settings: ScriptSettings) -> ScriptWriterBackend:
    """Pipeline 1's writer: the entry of ``soundsight.backends.SCRIPT_WRITERS`` that ``script.backend`` names."""
    return registry.load("script writer", settings.backend)


def scene_writer(settings: ScriptSettings) -> SceneWriterBackend:
    """Pipeline 2's: the entry of ``soundsight.backends.SCENE_WRITERS`` that ``script.scene_writer`` names."""
    return registry.load("scene writer", settings.scene_writer)


def occupying(limit: str):
    """One slot of the Prefect global concurrency limit `limit` while the block runs; none for ''.

    The limit caps requests to a served model across every run and worker; without it (``prefect
    gcl create NAME --limit N``) requests are not capped.
    """
    return concurrency(limit, occupy=1) if limit else nullcontext()


def script_identity(inputs: dict[str, Any]) -> str:
    """Writer id and prompt template hash: what the script cache key depends on."""
    settings: ScriptSettings = inputs["settings"]
    return f"{script_writer(settings).writer(settings).writer_id}|template={template_hash()}"


def sung_words(lyrics: Manifest | None, segmentation: Segmentation) -> tuple[list[str], list[str]]:
    """(what each segment sings, the lyrics' themes) for the script prompts; empty without lyrics."""
    if lyrics is None:
        return [], []
    found = read_lyrics(lyrics)
    if not found.lines:
        return [], []
    spans = [(s.start, s.end) for s in segmentation.segments]
    return sung_per_segment(found, spans), themes(found)


def build_prompt(
    analysis: Analysis,
    durations: list[float],
    settings: ScriptSettings,
    sung: list[str] | None = None,
    lyric_themes: list[str] | None = None,
) -> str:
    """The paper's Block 1 prompt filled with this run's labels, durations and (if sung) lyrics."""
    return script_prompt(
        sung=sung,
        themes=lyric_themes,
        track_sentences=[label.sentence() for label in analysis.track.values()],
        segment_sentences=[[label.sentence() for label in seg.labels.values()] for seg in analysis.segments],
        durations=durations,
        visual_sentences=[label.sentence() for label in analysis.visual.values()],
        characters=settings.characters,
        story_cues=settings.story_cues,
    )


def script_request(
    prompt: str,
    analysis: Analysis,
    durations: list[float],
    settings: ScriptSettings,
    meta: Song,
    sung: list[str],
    lyric_themes: list[str],
) -> ScriptRequest:
    """What a script writer is given: the prompt, labels and durations, the user's cues, the song's identity.

    Parameters
    ----------
    prompt : str
        The filled prompt (also written to prompt.txt).
    analysis : Analysis
        Labels of the track and of every segment.
    durations : list of float
        One per scene, seconds.
    settings : ScriptSettings
        For the user's characters and story cues.
    meta : Song
        The loaded song (content hash, title).
    sung, lyric_themes : list of str
        As `sung_words` returns them.
    """
    return ScriptRequest(
        prompt=prompt,
        analysis=analysis,
        durations=durations,
        song_hash=meta.content_hash,
        title=meta.title or meta.slug,
        characters=settings.characters,
        story_cues=settings.story_cues,
        sung=sung,
        themes=lyric_themes,
    )


EDITABLE = ("script", "bible")  # a user may edit these; later stages then follow the edit (`adopt_edits`)


def write_script_files(
    song: Manifest, prompt: str, response: str, script: SceneScript, bible: VisualBible | None
) -> Manifest:
    """The script stage's files, for either pipeline.

    prompt.txt, response.txt, script.json, script.txt and bible.json (the run's visual identity,
    written once, before any scene renders).
    """
    folder = stage_folder(song.run_dir, "script")
    names = {"prompt": "prompt.txt", "response": "response.txt", "script": "script.json", "script_text": "script.txt"}
    write_text_atomic(folder / names["prompt"], prompt + "\n")
    write_text_atomic(folder / names["response"], response)
    write_json_atomic(folder / names["script"], script)
    write_text_atomic(folder / names["script_text"], script_text(script))
    if bible is not None:
        names["bible"] = "bible.json"
        write_json_atomic(folder / names["bible"], bible)
    files = {name: folder / file for name, file in names.items()}
    manifest = written("script", song.run_dir, files, links=names, writer=script.writer, scenes=len(script.scenes))
    return manifest.model_copy(update={"editable": [name for name in EDITABLE if name in names]})


def check_script_edit(script: Manifest, name: str, path: Path) -> None:
    """Raise ValueError unless an edited script.json / bible.json can be used."""
    if name == "script":
        edited = SceneScript.model_validate_json(path.read_text())
        if len(edited.scenes) != int(script.info["scenes"]):
            raise ValueError(f"it has {len(edited.scenes)} scenes for {script.info['scenes']} segments")
    else:
        VisualBible.model_validate_json(path.read_text())


def script_text(script: SceneScript) -> str:
    """The script in the paper's format (Block 3)."""
    lines = ["BEGIN SCRIPT", ""]
    for scene in script.scenes:
        lines += [f"SCENE {scene.index + 1}:", scene.description, ""]
    return "\n".join(lines + ["END SCRIPT", ""])


@task(**stage_options("script", 4, identity=script_identity, retries=2, retry_delay_seconds=5))
def write_script(
    song: Manifest, segments: Manifest, analysis: Manifest, settings: ScriptSettings, lyrics: Manifest | None = None
) -> Manifest:
    """prompt.txt, response.txt, script.json and script.txt (pipeline 1: labels -> script)."""
    meta, _ = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text())
    durations = [round(s.duration, 2) for s in segmentation.segments]
    sung, lyric_themes = sung_words(lyrics, segmentation)
    prompt = build_prompt(labels, durations, settings, sung, lyric_themes)

    backend = script_writer(settings)
    writer = backend.writer(settings)
    request = script_request(prompt, labels, durations, settings, meta, sung, lyric_themes)
    with occupying(backend.concurrency_limit):
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
        warnings=result.warnings,
    )

    response = result.raw_response or "(written by the embedded template writer: no model response)\n"
    response += "".join(f"\nwarning: {w}" for w in result.warnings) + "".join(f"\nnote: {n}" for n in result.notes)
    return write_script_files(song, prompt, response, script, result.bible)


# -- pipeline 2: an audio-language model listens and writes the story ----------------------------


def make_story_writer(settings: LALMSettings):
    """The audio-language model's story writer (`models.script.lalm.LALMStoryWriter`)."""
    from soundsight.models.script.lalm import LALMStoryWriter

    return LALMStoryWriter(settings)


def check_endpoints(settings: Settings) -> None:
    """Fail in seconds, before any stage runs, when an endpoint the run needs is down.

    Pipeline 1: the script writer's (the LLM's, for ``script.backend=llm``). Pipeline 2: the
    audio-language model's, then the scene writer's. Each endpoint is asked once.

    Raises
    ------
    LLMUnavailableError
        One line naming the URL.
    """
    from soundsight.models.script.chat import ChatClient

    needed: list[tuple[ChatEndpoint | None, str]] = []
    if settings.pipeline == "lalm":
        from soundsight.models.script.lalm import UNAVAILABLE_HINT

        backend = scene_writer(settings.script)
        needed.append((settings.lalm.chat_endpoint(), UNAVAILABLE_HINT))
        needed.append((backend.endpoint(backend.script_settings(settings)), backend.unavailable_hint))
    else:
        backend = script_writer(settings.script)
        needed.append((backend.endpoint(settings.script), backend.unavailable_hint))
    asked = set()
    for endpoint, hint in needed:
        if endpoint is not None and endpoint["base_url"] not in asked:
            asked.add(endpoint["base_url"])
            ChatClient(endpoint["base_url"], endpoint["api_key"], unavailable_hint=hint).check_reachable()


def segment_boundaries(segmentation: Segmentation) -> list[float]:
    """Where the song's segments meet, seconds (no 0, no end)."""
    return [seg.start for seg in segmentation.segments[1:]]


def listening_plan(song: Manifest, segments: Manifest, settings: LALMSettings) -> ListeningPlan:
    """How the served model will hear this song: whole, window by window, or its beginning.

    Asks the server which model it serves (the audio limit depends on it). A song within the
    limit gets the same plan whatever the segments, so re-segmenting does not re-listen.
    """
    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    return make_story_writer(settings).plan(pcm, meta.sample_rate, segment_boundaries(segmentation))


def story_identity(inputs: dict[str, Any]) -> str:
    """Served model (id and root), story prompts' hash: what the story cache key depends on besides its inputs."""
    return make_story_writer(inputs["settings"]).story_id


@task(**stage_options("story", 1, identity=story_identity, retries=2, retry_delay_seconds=5))
def write_story(
    song: Manifest, plan: ListeningPlan, settings: LALMSettings, characters: str = "", story_cues: str = ""
) -> Manifest:
    """story.txt and listen/ (plan.json, prompt.txt, response.txt, window_NN.txt when windowed)."""
    from soundsight.models.script.lalm import CONCURRENCY_LIMIT, StoryRequest
    from soundsight.models.script.listening import to_lalm_rate

    meta, pcm = read_song(song)
    writer = make_story_writer(settings)
    served = writer.served_model()
    if served.id != plan.model:  # it changed models between the plan and now
        raise SoundsightError(f"the server at {settings.base_url} now serves {served.id}, not {plan.model}: run again")
    request = StoryRequest(
        audio=to_lalm_rate(pcm, meta.sample_rate), plan=plan, characters=characters, story_cues=story_cues
    )
    with occupying(CONCURRENCY_LIMIT):
        result = writer(request)

    folder = stage_folder(song.run_dir, "story")
    names = {"story": "story.txt", "plan": "plan.json", "prompt": "prompt.txt", "response": "response.txt"}
    links = {"story": "story.txt", "plan": "listen/plan.json", "prompt": "listen/prompt.txt"}
    links["response"] = "listen/response.txt"
    write_text_atomic(folder / names["story"], (result.story or "(the model wrote no story)") + "\n")
    requests = [
        {
            "what": h.what,
            "audio": h.audio.model_dump() if h.audio else None,
            "prompt_tokens": h.reply.prompt_tokens,
            "completion_tokens": h.reply.completion_tokens,
            "finish_reason": h.reply.finish_reason,
        }
        for h in result.heard
    ]
    write_json_atomic(folder / names["plan"], {**plan.model_dump(mode="json"), "requests": requests})
    write_text_atomic(folder / names["prompt"], result.prompt + "\n")
    write_text_atomic(folder / names["response"], result.transcript())
    for k, description in enumerate(result.windows, 1):
        names[f"window_{k:02d}"] = f"window_{k:02d}.txt"
        links[f"window_{k:02d}"] = f"listen/window_{k:02d}.txt"
        window = plan.windows[k - 1]
        write_text_atomic(
            folder / names[f"window_{k:02d}"], f"[{window.start:.1f}-{window.end:.1f} s]\n{description}\n"
        )
    files = {name: folder / file for name, file in names.items()}
    return written(
        "story",
        song.run_dir,
        files,
        links=links,
        model=served.id,
        mode=plan.mode,
        requests=len(result.heard),
        writer_id=writer.story_id,
    )


def scene_writer_settings(settings: Settings) -> ScriptSettings:
    """The ``script`` settings as the pipeline-2 scene writer uses them (`SceneWriterBackend.script_settings`)."""
    return scene_writer(settings.script).script_settings(settings)


def scenes_identity(inputs: dict[str, Any]) -> str:
    """Scene writer id (its served model), scene prompt hash, and what labels the fallback gets."""
    from soundsight.models.analysis.features import BACKEND_ID
    from soundsight.models.script.story_to_scenes import scenes_prompt_hash

    settings: ScriptSettings = inputs["settings"]
    labels = "analysis" if inputs.get("analysis") is not None else f"in-memory:{BACKEND_ID}"
    writer = scene_writer(settings).writer(settings)
    return (
        f"lalm-scenes|{writer.writer_id}|scenes-prompt={scenes_prompt_hash()[:16]}"
        f"|labels={labels}|vocabulary={load_vocabulary().content_hash[:16]}"
    )


@task(**stage_options("script", 4, identity=scenes_identity, retries=2, retry_delay_seconds=5))
def write_scenes(
    song: Manifest,
    segments: Manifest,
    story: Manifest,
    analysis: Manifest | None,
    settings: ScriptSettings,
    lyrics: Manifest | None = None,
) -> Manifest:
    """Pipeline 2's script: prompt.txt (the story and every segment), response.txt, script.json, script.txt.

    `analysis` (``pipeline_2_analysis``) adds labels to the prompt. Without it, the embedded
    feature labels are computed here, in memory (nothing is written), for the two things that
    need labels whichever model wrote the scenes: the style sentence ending every video prompt,
    and the template writer that fills scenes the model did not deliver.
    """
    from soundsight.models.analysis.features import FeatureAnalyser
    from soundsight.models.script.story_to_scenes import scene_prompt, segment_levels

    meta, pcm = read_song(song)
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text()) if analysis is not None else None
    story_text = story.path("story").read_text().strip()
    if story_text == "(the model wrote no story)":
        story_text = ""
    durations = [round(s.duration, 2) for s in segmentation.segments]
    sung, lyric_themes = sung_words(lyrics, segmentation)
    prompt = scene_prompt(
        sung=sung,
        themes=lyric_themes,
        story=story_text,
        segmentation=segmentation,
        levels_db=segment_levels(pcm, meta.sample_rate, segmentation),
        analysis=labels,
        characters=settings.characters,
        story_cues=settings.story_cues,
    )
    context = labels or FeatureAnalyser(load_vocabulary())(
        pcm, meta.sample_rate, segmentation.segments, segmentation.tempo_bpm or 0.0, segmentation.beats
    )
    request = script_request(prompt, context, durations, settings, meta, sung, lyric_themes)
    backend = scene_writer(settings)
    writer = backend.writer(settings)
    with occupying(backend.concurrency_limit):
        result = writer(request)
    if len(result.scenes) != len(durations):
        raise RuntimeError(f"the scene writer wrote {len(result.scenes)} scenes for {len(durations)} segments")
    # Scenes the served model wrote are credited to it (the LALM itself, or the LLM).
    scenes = [s.model_copy(update={"source": backend.scene_source}) if s.source == "llm" else s for s in result.scenes]
    script = SceneScript(
        writer=backend.credit,
        writer_id=f"story:{story.info.get('writer_id', '?')}|scenes:{writer.writer_id}",
        title=meta.title or meta.slug,
        characters=result.characters,
        style=result.style,
        scenes=scenes,
        warnings=result.warnings,
    )

    response = result.raw_response + "\n" + "".join(f"warning: {w}\n" for w in result.warnings)
    response += "".join(f"note: {n}\n" for n in result.notes)
    return write_script_files(song, prompt, response, script, result.bible)
