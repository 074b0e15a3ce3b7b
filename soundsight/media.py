"""Small, pure helpers around files and ffmpeg that every room uses.

- `atomic_path` / `write_text_atomic`: write to a temporary name beside the target and
  rename only when complete, so a failed or interrupted stage never leaves half a file.
- `ffmpeg_exe`: the static build inside imageio-ffmpeg, else the ffmpeg on PATH.
- `H264_ARGS` and `FrameEncoder`: the one H.264 encoder every clip and video goes through, so
  clips from any renderer can be joined without re-encoding.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ANALYSIS_SAMPLE_RATE = 22050  # Hz: the run's analysis audio (audio.wav); every analysis backend resamples from it


def ffmpeg_exe() -> str:
    """The ffmpeg executable to run.

    imageio-ffmpeg's static build (starts in 40 ms; a distribution's dynamically linked ffmpeg
    takes ~300 ms, which adds up over one encode per scene), else the ffmpeg on PATH.
    """
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if found is None:
            raise RuntimeError("ffmpeg not found: install imageio-ffmpeg or your distribution's ffmpeg") from None
        return found


URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")
_NOT_A_FILE = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a pipe", stat.S_IFSOCK: "a socket"}  # fmt: skip


def song_file_problem(song: str) -> str:
    """Why `song` cannot be read as a song file ('' when it can), without opening it.

    Only a regular file is read: a device such as /dev/zero never ends, and a pipe (``<(cat
    song.ogg)``) would be drained by the first read, before the song is decoded.
    """
    if song.lower().startswith(URL_SCHEMES):
        return "URLs are not supported; download the song and give the file's path"
    path = Path(song).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot be read ({e.strerror.lower() if e.strerror else e})"
    if not stat.S_ISREG(mode):
        kind = _NOT_A_FILE.get(stat.S_IFMT(mode), "not a regular file")
        return f"is {kind}, not a song file; save the song to a file and give that file's path"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    """The umask of this process, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


# A temporary file is named `.<stem>.<pid>.<random>.part<suffix>`: the pid tells a later run whether
# its writer is still alive (`sweep_stale_parts`).
_PART = re.compile(r"^\..*\.(\d+)\.[^.]+\.part(\.[^.]*)?$")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    The file gets the permissions any new file of this process gets (0666 less the umask), not
    the 0600 of a temporary file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.{os.getpid()}.", suffix=f".part{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on file `path` (created if missing) for the ``with`` block.

    It holds across processes, and the kernel releases it if the holder dies.
    """
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep_stale_parts(folder: Path) -> list[Path]:
    """Delete temporary files under `folder` left by processes that no longer run (killed mid-write).

    Returns
    -------
    list of pathlib.Path
        What was deleted. Files of live processes (another render writing now) are kept.
    """
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).rglob(".*.part*"):
        match = _PART.match(path.name)
        if not match or not path.is_file():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path, data) -> Path:
    """Write a pydantic model or a JSON-able value to `path` atomically, indented."""
    if hasattr(data, "model_dump_json"):
        text = data.model_dump_json(indent=2)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def run_ffmpeg(args: list[str], what: str) -> None:
    """Run ffmpeg with `args`; raise RuntimeError naming `what` (and ffmpeg's last words) on failure."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed while {what}: {tail_lines(proc.stderr.decode(errors='replace'), 600)}")


def count_video_frames(path: Path) -> int:
    """Frames of a video file's first video stream, counted from its packets (no decoding, milliseconds).

    One ``framecrc`` line per packet of the stream copied: unlike ``-progress``'s ``frame=``, which
    ffmpeg 7.0 (imageio-ffmpeg 0.6.0's build) leaves out for a copied stream, it counts in every release.

    Raises
    ------
    RuntimeError
        ffmpeg cannot read the file.
    """
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, text=True,
    )  # fmt: skip
    packets = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    if proc.returncode != 0 or not packets:
        raise RuntimeError(f"ffmpeg cannot count the frames of {path}: {tail_lines(proc.stderr, 300)}")
    return len(packets)


def tail_lines(text: str, limit: int) -> str:
    """The last whole lines of `text` that fit in `limit` characters, joined by ' | ' (never cut mid-word).

    What an error message quotes of a tool's output: its last words matter most. Dropped lines are
    counted (``[3 earlier lines]``); a single line longer than `limit` keeps its end, from a word.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    kept: list[str] = []
    while lines and len(" | ".join([lines[-1], *kept])) <= limit:
        kept.insert(0, lines.pop())
    if not kept and lines:  # one long line: its end, starting at a word
        last = lines.pop()
        cut = last[len(last) - limit :]
        kept = ["…" + (cut.split(" ", 1)[1] if " " in cut else cut)]
    if lines:
        kept.insert(0, f"[{len(lines)} earlier line{'s' if len(lines) > 1 else ''}]")
    return " | ".join(kept)


# Every clip and every conformed clip is encoded with exactly these settings, so the concat demuxer
# joins them without re-encoding. CRF 18 is visually lossless for these sizes; "veryfast" keeps the
# CPU animatic inside its budget.
H264_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-profile:v", "high"]


class FrameEncoder:
    """RGB frames piped into ffmpeg, out as an H.264 MP4 written atomically (`H264_ARGS`).

    Use as a context manager and `write` exactly `frames` frames::

        with FrameEncoder(out, width=w, height=h, fps=24, frames=n) as enc:
            for frame in frames:          # (h, w, 3) uint8
                enc.write(frame)

    Parameters
    ----------
    out_path : pathlib.Path
        The MP4; replaced only when ffmpeg succeeded.
    width, height : int
        Size of the frames written, pixels (the output size too unless `filter_complex` scales).
    fps : float
        Frames per second of input and output.
    frames : int
        Frames to keep (``-frames:v``).
    inputs : list of pathlib.Path
        Extra inputs (e.g. an overlay image), numbered from 1 in `filter_complex`.
    filter_complex : str, optional
        An ffmpeg filter graph from ``[0:v]`` (the frames) and the extra inputs.
    """

    def __init__(
        self,
        out_path: Path,
        *,
        width: int,
        height: int,
        fps: float,
        frames: int,
        inputs: tuple[Path, ...] = (),
        filter_complex: str = "",
    ):
        self.out_path = Path(out_path)
        self.size, self.fps, self.frames = (width, height), fps, frames
        self.inputs, self.filter_complex = inputs, filter_complex

    def __enter__(self) -> FrameEncoder:
        self._atomic = atomic_path(self.out_path)
        tmp = self._atomic.__enter__()
        w, h = self.size
        cmd = [
            ffmpeg_exe(),
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{w}x{h}",
            "-framerate",
            f"{self.fps:g}",
            "-i",
            "pipe:0",
        ]
        for extra in self.inputs:
            cmd += ["-i", str(extra)]
        if self.filter_complex:
            cmd += ["-filter_complex", self.filter_complex]
        cmd += [
            *H264_ARGS,
            "-r",
            f"{self.fps:g}",
            "-frames:v",
            str(self.frames),
            "-an",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(tmp),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        return self

    def write(self, frame) -> None:
        """One (height, width, 3) uint8 RGB frame."""
        try:
            self._proc.stdin.write(memoryview(frame).cast("B") if frame.flags.c_contiguous else frame.tobytes())
        except BrokenPipeError:  # ffmpeg died: its message is reported on exit
            pass

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self._proc.stderr.read().decode(errors="replace")
        code = self._proc.wait()
        if exc_type is None and code != 0:
            exc = RuntimeError(f"ffmpeg failed writing {self.out_path.name}: {tail_lines(err, 400)}")
            self._atomic.__exit__(RuntimeError, exc, None)
            raise exc
        self._atomic.__exit__(exc_type, exc, tb)
