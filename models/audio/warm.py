"""Compile the CPU stages' just-in-time code once, so the first song on a machine starts at full speed.

librosa's beat tracker and features are numba functions compiled on first use and cached on disk
(``cache=True``: beside librosa's sources when that folder is writable, else in
``NUMBA_CACHE_DIR``). Compiling them costs ~28-38 s on a fresh machine, paid by the first song's
segment stage; `compile_cpu_stages` pays it ahead, on a synthetic click track, through the same
code the segment and analyse stages run (`soundsight warm`; install.sh and the Docker images run
it). An image built on one machine and run on another needs ``NUMBA_CPU_NAME=generic`` at build
and run time: numba keys its cache on the CPU's name and features, and with ``generic`` on
neither (numba then compiles for the baseline x86-64 instruction set).
"""

from __future__ import annotations

import time

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE

__all__ = ["compile_cpu_stages"]


def click_track(seconds: float = 12.0, bpm: float = 120.0, sr: int = ANALYSIS_SAMPLE_RATE) -> np.ndarray:
    """A mono float32 click track with a little noise: enough rhythm for the beat tracker to lock on."""
    rng = np.random.default_rng(0)
    y = 0.01 * rng.standard_normal(int(seconds * sr)).astype(np.float32)
    click = np.exp(-np.arange(int(0.03 * sr)) / (0.004 * sr)).astype(np.float32)
    for k, start in enumerate(np.arange(0.5, seconds - 0.1, 60.0 / bpm)):
        i = int(start * sr)
        y[i : i + click.size] += (1.0 if k % 4 == 0 else 0.6) * click[: y.size - i]
    return y


def compile_cpu_stages() -> float:
    """Run the default beat tracker, segment planner and features analyser once; returns the seconds it took."""
    from soundsight.models.audio.segmenters import plan_segments
    from soundsight.models.registry import load
    from soundsight.settings import AnalysisSettings, SegmentSettings

    t0 = time.perf_counter()
    y, sr, segment = click_track(), ANALYSIS_SAMPLE_RATE, SegmentSettings()
    grid = load("beat tracker", segment.beat_tracker).track(y, sr, segment)
    plan = plan_segments(y, sr, segment, song_hash="warm", fps=24, max_clip_seconds=5.0, grid=grid)
    analyser = load("analyser", "features").analyser(AnalysisSettings(backend="features"))
    analyser(y, sr, plan.segments, plan.tempo_bpm or 120.0, plan.beats)
    return time.perf_counter() - t0
