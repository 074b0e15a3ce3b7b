"""What checking a cache hit costs: every file re-hashed (sha256) against size + mtime alone.

    .venv/bin/python benchmarks/cache_check.py [--repeats 5]

`Manifest.problem` re-hashes every file a cached record names before the record is used (a file
overwritten in place with its size and mtime put back is caught; a stat comparison would pass
it). This prints what that costs per cached run of one song, for the scene clips of two runs written as
random bytes of assumed sizes (the files' content does not change sha256's speed), side by side with the size + mtime comparison it replaced (the baseline), and the hashing
rate in MB/s. A flow checks each scene's record twice on a rerun (where to run it, then Prefect's
cache lookup), so a rerun pays twice the figure shown.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from soundsight.media import sha256_file
from soundsight.schemas import Manifest

# Assumed sizes of whole songs' files (bytes per clip x clips), on the high side: the CPU animatic at
# its default 640x360 and a Wan 2.1 480x832 render of 81-frame clips; the load stage's audio.wav
# (229 s of float32 at 22.05 kHz) beside them.
RUNS = {
    "animatic 640x360, 229 s song": {"clips": 42, "clip_bytes": 600_000, "audio_bytes": 20_160_000},
    "Wan 480x832, 229 s song": {"clips": 45, "clip_bytes": 6_000_000, "audio_bytes": 20_160_000},
}


def make_records(folder: Path, clips: int, clip_bytes: int, audio_bytes: int) -> list[Manifest]:
    """One manifest per clip plus the load stage's audio, over files of random bytes."""
    records = []
    for name, size in [("audio.wav", audio_bytes)] + [(f"scene_{i:03d}.mp4", clip_bytes) for i in range(clips)]:
        path = folder / name
        path.write_bytes(os.urandom(size))
        st = path.stat()
        records.append(Manifest(stage="bench", run_dir=str(folder), files={"f": name}, hashes={"f": sha256_file(path)},
                                stats={"f": (st.st_size, st.st_mtime_ns)}))  # fmt: skip
    return records


def stat_check(record: Manifest) -> str:
    """The baseline: the comparison of size and mtime alone (what a hit cost before re-hashing)."""
    st = record.path("f").stat()
    return "" if (st.st_size, st.st_mtime_ns) == tuple(record.stats["f"]) else "changed"


def best_of(repeats: int, check, records: list[Manifest]) -> float:
    """Fastest of `repeats` passes of `check` over every record, seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        assert not any(check(r) for r in records)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; best of {args.repeats} passes (files in page cache)")
    print(f"{'one cached run of':34} {'MB':>7} {'sha256 s':>9} {'size+mtime s':>13} {'MB/s':>7}")
    for label, spec in RUNS.items():
        with tempfile.TemporaryDirectory(prefix="soundsight-cache-check-") as tmp:
            records = make_records(Path(tmp), **spec)
            megabytes = (spec["clips"] * spec["clip_bytes"] + spec["audio_bytes"]) / 1e6
            hashed = best_of(args.repeats, Manifest.problem, records)
            stated = best_of(args.repeats, stat_check, records)
            print(f"{label:34} {megabytes:7.1f} {hashed:9.3f} {stated:13.4f} {megabytes / hashed:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
