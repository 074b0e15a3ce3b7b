"""Stage 6: the clips in order under the original audio -> video.mp4 (H.264 + AAC).

Cut k falls on output frame ``round(t_k * fps)`` of boundary t_k, computed from absolute time, so
no drift accumulates: clip k contributes exactly ``end_frame - start_frame`` frames. Clips already
on the output grid (same fps, size and frame count) are joined without re-encoding; others are
conformed first (resampled to the output fps by dropping/repeating frames - never time-stretched
- scaled, and trimmed to their exact frame count). The finished video's frames are counted before
it is kept: a video that does not last as long as the song (within one frame) fails the stage.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from prefect import task

from soundsight.media import H264_ARGS, atomic_path, count_video_frames, run_ffmpeg
from soundsight.models.lyrics.captions import write_captions
from soundsight.schemas import Manifest, Segmentation, Song
from soundsight.settings import RenderSettings
from soundsight.tasks.common import stage_folder, stage_options, written
from soundsight.tasks.lyrics import read_lyrics

# The fast AAC coder is 3x quicker than the default two-loop one at 192 kb/s, where the
# difference is inaudible.
AUDIO_ARGS = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "192k", "-ar", "48000"]


def probe_clip(path: Path) -> dict:
    """fps, frame count, width and height of a clip's video stream (ffprobe when installed)."""
    import shutil

    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
         "stream=width,height,r_frame_rate,nb_read_packets", "-of", "json", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        return {}
    stream = json.loads(out.stdout)["streams"][0]
    num, den = stream["r_frame_rate"].split("/")
    return {
        "fps": float(num) / float(den),
        "frames": int(stream["nb_read_packets"]),
        "width": stream["width"],
        "height": stream["height"],
    }


def conform_clip(src: Path, dst: Path, frames: int, settings: RenderSettings) -> None:
    """Re-time `src` onto the output grid: exactly `frames` frames at settings.fps and size."""
    vf = (
        f"fps={settings.fps},scale={settings.width}:{settings.height}:force_original_aspect_ratio=increase,"
        f"crop={settings.width}:{settings.height},setsar=1,tpad=stop_mode=clone:stop=-1"
    )
    run_ffmpeg(
        ["-i", str(src), "-vf", vf, "-frames:v", str(frames), *H264_ARGS, "-r", str(settings.fps), "-an", str(dst)],
        f"conforming {src.name}",
    )


def concat_quoted(path: Path) -> str:
    r"""`path` quoted for a line of ffmpeg's concat list: inside single quotes, each ``'`` becomes ``'\''``."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def caption_args(lyrics: Manifest | None, settings: RenderSettings, scratch: Path) -> tuple[list[str], list[str]]:
    """(extra inputs, output options) for the sung-line captions `settings.captions` asks for.

    ``soft``: the lyrics' SRT as a subtitle track players can switch on (mov_text); ``burned``:
    the karaoke ASS drawn into the picture (libass; the video is re-encoded); ``off``, or a song
    without lyrics: nothing.
    """
    if settings.captions == "off" or lyrics is None or not int(lyrics.info.get("lines", 0)):
        return [], ["-c:v", "copy"]
    if settings.captions == "soft":
        return ["-i", str(lyrics.path("srt"))], ["-map", "2:s:0", "-c:v", "copy", "-c:s", "mov_text",
                                                 "-metadata:s:s:0", "title=Sung lines"]  # fmt: skip
    ass = scratch / "captions.ass"  # a plain path: the filter's argument needs no escaping
    # Laid out for this video's size (lyrics.ass is for players, at 1280x720): the same cues.
    write_captions(read_lyrics(lyrics), ass, width=settings.width, height=settings.height)
    return [], ["-vf", f"ass={ass}", *H264_ARGS]


def check_video_length(video: Path, frames: int, fps: int, song_seconds: float) -> None:
    """Raise unless `video` has `frames` frames (within one): as long as the song at `fps`.

    The clips' manifests say how many frames each holds; this counts what the joined video holds,
    so a clip that is shorter than its manifest says can never make a short video that reports success.
    """
    counted = count_video_frames(video)
    if abs(counted - frames) > 1:
        raise RuntimeError(
            f"the assembled video is {counted / fps:.2f} s long ({counted} frames at {fps} fps), the song "
            f"{song_seconds:.2f} s ({frames} frames): a clip is shorter than its scene; render it again "
            "(--output.force render)"
        )


@task(**stage_options("assemble", 4))
def assemble_video(
    song: Manifest,
    segments: Manifest,
    clips: list[Manifest],
    settings: RenderSettings,
    lyrics: Manifest | None = None,
) -> Manifest:
    """The clips in order under the original audio (and optional sung-line captions) -> video.mp4."""
    meta = Song.model_validate_json(song.path("song").read_text())
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    if len(clips) != len(segmentation.segments):
        raise RuntimeError(f"{len(clips)} clips for {len(segmentation.segments)} segments")
    source = song.path("source")  # the load stage's copy: the user's file may have moved since
    folder = stage_folder(song.run_dir, "assemble")
    out = folder / "video.mp4"

    with tempfile.TemporaryDirectory(prefix="soundsight-assemble-") as scratch:
        parts = []
        for seg, clip in zip(segmentation.segments, sorted(clips, key=lambda c: int(c.info["index"]))):
            path = clip.path("clip")
            facts = clip.info if "frames" in clip.info else probe_clip(path)  # renderers report what they wrote
            on_grid = (
                facts.get("frames") == seg.frames
                and abs(facts.get("fps", 0) - settings.fps) < 1e-6
                and facts.get("width") == settings.width
                and facts.get("height") == settings.height
            )
            if not on_grid:
                conformed = Path(scratch) / f"conformed_{seg.index:03d}.mp4"
                conform_clip(path, conformed, seg.frames, settings)
                path = conformed
            parts.append(path)
        listing = Path(scratch) / "clips.txt"
        listing.write_text("".join(f"file {concat_quoted(p.resolve())}\n" for p in parts))
        total_frames = segmentation.segments[-1].end_frame
        inputs, video_options = caption_args(lyrics, settings, Path(scratch))
        with atomic_path(out) as tmp:
            run_ffmpeg(
                ["-f", "concat", "-safe", "0", "-i", str(listing), "-i", str(source), *inputs,
                 "-map", "0:v:0", "-map", "1:a:0", *video_options, "-af", "apad", *AUDIO_ARGS,
                 "-t", f"{meta.duration:.6f}",
                 "-metadata", f"title={meta.title or meta.slug}", "-metadata", f"artist={meta.artist}",
                 "-metadata", "comment=Rendered by soundsight; keep the song's licence line with this video.",
                 "-movflags", "+faststart", "-f", "mp4", str(tmp)],
                "assembling the video",
            )  # fmt: skip
            check_video_length(tmp, total_frames, settings.fps, meta.duration)
    return written(
        "assemble",
        song.run_dir,
        {"video": out},
        links={"video": "video.mp4"},
        frames=total_frames,
        fps=settings.fps,
        duration=meta.duration,
        scenes=len(parts),
    )
