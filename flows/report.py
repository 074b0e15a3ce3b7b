"""What the Prefect UI shows on a run: artifacts built from the stages' manifests.

Plain functions, not tasks: they run in the flow on every run, cached or not, never enter a cache
key, and never fail a render (a report that cannot be made is logged and skipped). Each song run
gets, under keys that start with its run folder's name (`<slug>-<hash8>-…`, so the Artifacts page
keeps one history per song):

  script      markdown: the script, scene by scene, with times, characters and style
  segments    table: each segment's times, cut reason and labels
  progress    progress: scenes finished, updated as each scene finishes
  preview     image: an animated GIF sampled across video.mp4 (the UI shows no <video>)
  video       link: the MP4
  timings     table: per stage, its task runs' states and time spent

Images and links need a URL the browser can open. Set SOUNDSIGHT_MEDIA_URL to a web server's URL
for the runs folder (e.g. `python -m http.server 8081 -d runs` and
SOUNDSIGHT_MEDIA_URL=http://127.0.0.1:8081); without it the preview is embedded as a data URL
and the link is a file:// URL.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed

from soundsight.environment import environment_variable
from soundsight.flows.stages import Stages
from soundsight.media import atomic_path, run_ffmpeg
from soundsight.schemas import Analysis, Manifest, SceneScript, Segmentation

log = logging.getLogger("soundsight.report")
MEDIA_URL = environment_variable("SOUNDSIGHT_MEDIA_URL", "a web server's URL for the runs folder")
PREVIEW_FRAMES, PREVIEW_WIDTH, PREVIEW_FPS = 16, 192, 2


def artifact_key(run: Manifest | str, what: str) -> str:
    """The artifact key for `what` of one song's run.

    `<run folder>-<what>`, in the characters Prefect allows in keys (a-z, 0-9, -); `run` is a
    stage's manifest or the run folder's path.
    """
    run_dir = run.run_dir if isinstance(run, Manifest) else run
    name = re.sub(r"[^a-z0-9]+", "-", Path(run_dir).name.lower()).strip("-") or "song"
    return f"{name}-{what}"


def _safely(fn):
    """Reports never fail a render: log what went wrong and go on."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - an artifact is never worth a failed video
            log.warning("could not publish the %s report: %s: %s", fn.__name__, type(e).__name__, e)
            return None

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# --- stage timings ---------------------------------------------------------------------------------


@_safely
def publish_timings(run: Manifest, stages: Stages) -> None:
    """The timings table artifact."""
    create_table_artifact(
        stages.table(),
        key=artifact_key(run, "timings"),
        description="Per stage, then per scene: task runs, final states, seconds spent running, and of those "
        "the seconds inside the video model (GPU work; 0 for cached scenes).",
    )


# --- script and segments ---------------------------------------------------------------------------


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def md_escape(text: str) -> str:
    """Text shown as itself in markdown: every markdown character escaped, and ``<`` / ``&`` as entities.

    Song tags and model answers reach the UI; without this a title could carry links, images
    that call out to a server, or HTML.
    """
    text = " ".join(str(text).split())
    return _MARKDOWN.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


@_safely
def publish_script(script: Manifest, segments: Manifest, analysis: Manifest | None) -> None:
    """The script as markdown, and the segment/label table (`analysis`: None when pipeline 2 ran without labels).

    The script's warnings (scenes a served model wrote unusably, written by the template instead)
    head the markdown and are logged as warnings, which the CLI prints: on every run, cached or
    not, a script that is not what was asked for is never rendered silently.
    """
    written = SceneScript.model_validate_json(script.path("script").read_text())
    for warning in written.warnings:
        log.warning("script: %s", warning)
    cut = Segmentation.model_validate_json(segments.path("segments").read_text())
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text()) if analysis is not None else None

    mood = labels.track["mood"].label if labels is not None and "mood" in labels.track else "—"
    lines = [
        f"# {md_escape(written.title or 'Script')}",
        "",
        f"**Writer:** {md_escape(written.writer)} · **Scenes:** {len(written.scenes)} · "
        f"**Tempo:** {cut.tempo_bpm or 0:.0f} BPM · **Mood:** {md_escape(mood)}",
        "",
        *[f"> **Warning:** {md_escape(warning)}\n" for warning in written.warnings],
        f"**Characters:** {md_escape(written.characters or '—')}",
        "",
        f"**Style:** {md_escape(written.style or '—')}",
        "",
    ]
    for scene, seg in zip(written.scenes, cut.segments):
        by_template = " · *template writer (fallback)*" if scene.source == "fallback" else ""
        lines += [
            f"### Scene {scene.index + 1} · {_clock(seg.start)}–{_clock(seg.end)}{by_template}",
            "",
            md_escape(scene.description),
            "",
        ]
    create_markdown_artifact(
        "\n".join(lines), key=artifact_key(script, "script"), description=f"script.txt of {Path(script.run_dir).name}"
    )

    rows = []
    for seg, seg_labels in zip(cut.segments, labels.segments if labels is not None else [None] * len(cut.segments)):
        row: dict[str, Any] = {
            "scene": seg.index + 1,
            "start": round(seg.start, 2),
            "end": round(seg.end, 2),
            "seconds": round(seg.duration, 2),
            "frames": seg.frames,
            "cut": seg.reason,
        }
        if seg_labels is not None:
            row.update({label.name: f"{label.label} ({label.score:.2f})" for label in seg_labels.labels.values()})
        rows.append(row)
    source = f"segments.json + analysis.json ({labels.backend})" if labels is not None else "segments.json"
    create_table_artifact(
        rows, key=artifact_key(segments, "segments"), description=f"{source} of {Path(segments.run_dir).name}"
    )


# --- progress --------------------------------------------------------------------------------------


def track_progress(
    run: Manifest | str, clips: list[PrefectFuture], on_finished: Callable[[PrefectFuture], None] | None = None
) -> None:
    """Wait for every scene, updating a progress artifact as each one finishes.

    Returns once every scene has finished (or failed), so a retry finds every good scene cached. A
    drop-in for `prefect.futures.wait` wherever scenes are submitted (`run`: a manifest or the run
    folder).
    """
    total = len(clips)
    artifact: UUID | None = _safely(create_progress_artifact)(
        0.0, key=artifact_key(run, "progress"), description=f"Scenes: 0 of {total} finished"
    )
    done = failed = 0
    last_update = time.monotonic()
    for future in as_completed(clips):
        future.wait()  # sets the future's final state locally (no server round trip)
        done += 1
        failed += 0 if future.state.is_completed() else 1
        if on_finished is not None:
            on_finished(future)
        # At most two updates a second: cached scenes finish together, and each update is a request.
        if artifact is not None and (done == total or time.monotonic() - last_update >= 0.5):
            last_update = time.monotonic()
            note = f"Scenes: {done} of {total} finished" + (f", {failed} failed" if failed else "")
            _safely(update_progress_artifact)(artifact, 100.0 * done / total, description=note)


# --- preview and link ------------------------------------------------------------------------------


def media_url(path: Path, runs_dir: Path) -> str | None:
    """`path`'s URL under SOUNDSIGHT_MEDIA_URL (which serves `runs_dir`), or None when unset."""
    base = MEDIA_URL.get().strip()
    if not base:
        return None
    relative = path.resolve().relative_to(Path(runs_dir).expanduser().resolve())
    return base.rstrip("/") + "/" + "/".join(relative.parts)


def make_preview(video: Path, duration: float, out: Path) -> Path:
    """An animated GIF of `PREVIEW_FRAMES` frames sampled evenly across `video`.

    Small enough to embed (~100 kB).
    """
    if out.is_file() and out.stat().st_mtime >= video.stat().st_mtime:
        return out  # made from this very video already: decoding it all again costs seconds per run
    rate = PREVIEW_FRAMES / max(duration, 1e-3)
    vf = (
        f"fps={rate:.6f},setpts=N/{PREVIEW_FPS}/TB,scale={PREVIEW_WIDTH}:-2:flags=lanczos,split[a][b];"
        "[a]palettegen=max_colors=64:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3"
    )
    with atomic_path(out) as tmp:
        run_ffmpeg(["-i", str(video), "-vf", vf, "-r", str(PREVIEW_FPS), "-frames:v", str(PREVIEW_FRAMES),
                    "-loop", "0", "-f", "gif", str(tmp)], "making the preview GIF")  # fmt: skip
    return out


@_safely
def publish_video(video: Manifest, stages: Stages) -> None:
    """preview.gif beside video.mp4 (one of the run's readable names) as an image artifact, and a link to the MP4."""
    output = stages.output
    mp4 = video.path("video")
    gif = make_preview(mp4, float(video.info.get("duration", 0.0)), mp4.with_name("preview.gif"))
    stages.show(Path(video.run_dir), {"preview.gif": gif})
    image = media_url(gif, output.runs_dir) or "data:image/gif;base64," + base64.b64encode(gif.read_bytes()).decode()
    create_image_artifact(
        image, key=artifact_key(video, "preview"), description=f"{PREVIEW_FRAMES} frames sampled across video.mp4"
    )
    create_link_artifact(
        media_url(mp4, output.runs_dir) or mp4.resolve().as_uri(),
        link_text=str(mp4),
        key=artifact_key(video, "video"),
        description="The rendered music video (MP4)",
    )


# --- catalogue -------------------------------------------------------------------------------------


def catalogue_key(catalogue: str, what: str = "") -> str:
    """The artifact key of a catalogue's table (`catalogue-<name>`) or of its `what`."""
    name = re.sub(r"[^a-z0-9]+", "-", Path(catalogue).stem.lower()).strip("-") or "songs"
    return f"catalogue-{name}" + (f"-{what}" if what else "")


class CatalogueProgress:
    """The catalogue run's live progress artifact: songs queued, running, done, failed, cached.

    Parameters
    ----------
    catalogue : str
        The catalogue (names the artifact's key).
    total : int
        How many songs it lists.
    """

    def __init__(self, catalogue: str, total: int):
        self.total = total
        self.last = ""
        self.artifact: UUID | None = _safely(create_progress_artifact)(
            0.0, key=catalogue_key(catalogue, "progress"), description=f"Songs: {total}, looking for changes"
        )

    @staticmethod
    def counts(songs: Iterable[Any]) -> dict[str, int]:
        """Songs by where they are: queued, running, done, failed, cached.

        `songs` have ``status`` ("" while their run goes on; Completed, Cached, or a failure) and
        ``run`` (a flow run, or None).
        """
        counts = dict.fromkeys(("queued", "running", "done", "failed", "cached"), 0)
        for song in songs:
            if song.status == "Cached":
                counts["cached"] += 1
            elif song.status == "Completed":
                counts["done"] += 1
            elif song.status:
                counts["failed"] += 1
            elif song.run is not None and song.run.state is not None and song.run.state.is_running():
                counts["running"] += 1
            else:
                counts["queued"] += 1
        return counts

    def update(self, songs: Iterable[Any]) -> dict[str, int]:
        """Publish the counts (only when they changed); returns them."""
        counts = self.counts(songs)
        note = f"Songs: {self.total} · " + " · ".join(f"{n} {what}" for what, n in counts.items())
        if self.artifact is not None and note != self.last:
            finished = counts["done"] + counts["failed"] + counts["cached"]
            _safely(update_progress_artifact)(self.artifact, 100.0 * finished / max(self.total, 1), description=note)
            self.last = note
        return counts


@_safely
def publish_catalogue(catalogue: str, rows: Iterable[dict[str, Any]]) -> None:
    """One row per song: status, scenes, duration, time spent, video path, its run (and why it failed)."""
    rows = list(rows)
    failed = sum(1 for r in rows if r["status"] not in ("Completed", "Cached"))
    cached = sum(1 for r in rows if r["status"] == "Cached")
    create_table_artifact(
        rows or [{"song": "(no songs found)"}],
        key=catalogue_key(catalogue),
        description=f"{catalogue}: {len(rows)} songs, {len(rows) - failed - cached} rendered, "
        f"{cached} unchanged (no run), {failed} failed",
    )
