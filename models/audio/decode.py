"""Decoding songs: any format ffmpeg reads -> mono float32 PCM, with the checks that catch bad files.

`decode_audio` raises `InputError` (naming the file) for missing, empty, non-audio or undecodable
files; `check_not_truncated` catches files cut short, which ffmpeg decodes without complaint.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import numpy as np

from soundsight.errors import InputError
from soundsight.media import ffmpeg_exe, tail_lines

__all__ = ["check_not_truncated", "decode_audio"]


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode `path` to mono float32 PCM at `sample_rate` Hz.

    Raises `InputError` (naming the file) when the file is missing, empty, not audio or
    undecodable. Errors ffmpeg reports while still producing audio (a glitch mid-stream, odd
    timestamps from some muxers) are logged, not fatal; a file cut short is caught by
    `check_not_truncated`, which compares the decoded length with the container's own.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    if head == b"MThd":
        raise InputError(
            path,
            "is a MIDI file (notes, not sound): render it to audio first with a General MIDI synthesiser "
            "(e.g. fluidsynth, or soundsight.flows.demo.render_midi as the demo does) and render that file",
        )
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error",
        "-i", str(path), "-vn", "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
        "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 or (err and not proc.stdout):
        if not _has_media_signature(path):
            raise InputError(path, "not an audio file ffmpeg can read")
        raise InputError(path, _explain_ffmpeg_error(err))
    if err:
        logging.getLogger("soundsight.media").warning(
            "%s: ffmpeg reported while decoding: %s", path, tail_lines(err, 300)
        )
    pcm = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if pcm.size == 0:
        raise InputError(path, "contains no decodable audio")
    return pcm


# Leading bytes of the containers songs come in (offset, bytes).
_SIGNATURES = (
    (0, b"OggS"),
    (0, b"RIFF"),
    (0, b"fLaC"),
    (0, b"ID3"),
    (4, b"ftyp"),
    (0, b"\x1aE\xdf\xa3"),
    (0, b"FORM"),
    (0, b"caff"),
    (0, b"#!AMR"),
    (0, b"MAC "),
    (0, b"wvpk"),
    (0, b"\x30\x26\xb2\x75"),
)


def _has_media_signature(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    if any(head[o : o + len(sig)] == sig for o, sig in _SIGNATURES):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG/AAC frame sync


def _explain_ffmpeg_error(err: str) -> str:
    low = err.lower()
    if "matches no streams" in low or "does not contain any stream" in low or "output file #0 does not contain" in low:
        return "has no audio stream"
    if "invalid data found" in low or "could not find codec" in low or "unknown format" in low:
        return "not an audio file ffmpeg can read"
    if "end of file" in low or "truncat" in low or "partial file" in low:
        return "damaged or truncated audio"
    last = err.splitlines()[-1] if err else "ffmpeg failed"
    return f"cannot decode ({last[:160]})"


def check_not_truncated(path: Path, decoded_seconds: float) -> None:
    """Raise `InputError` when the file ends before its own headers say it should.

    ffmpeg decodes a cut-off file without complaint, so we compare with what the container
    declares: an Ogg/Opus stream must end with an end-of-stream page; WAV, FLAC, MP4/M4A and
    MP3 files with a VBR header declare their length (read with mutagen), which the decoded
    audio must reach within 0.5 s.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if head == b"OggS":
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            tail = f.read()
            last = tail.rfind(b"OggS")
            if last < 0 or len(tail) < last + 6 or not tail[last + 5] & 0x04:
                raise InputError(path, "damaged or truncated audio (the Ogg stream has no end-of-stream page)")
            return
    try:
        import mutagen

        info = mutagen.File(path)
    except Exception:
        return
    declared = float(getattr(getattr(info, "info", None), "length", 0.0) or 0.0)
    if declared > 0 and declared - decoded_seconds > 0.5:
        raise InputError(
            path, f"damaged or truncated audio (decodes to {decoded_seconds:.1f} s, its header says {declared:.1f} s)"
        )
