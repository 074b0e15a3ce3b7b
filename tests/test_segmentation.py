"""Segmentation: properties on synthetic beat grids (fast) and one rendered piece with exact beats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundsight.models.audio.beats import BeatGrid
from soundsight.models.audio.segmenters import (
    BeatSnap,
    plan_segments,
    segment_random,
    segment_rule_based,
    segments_from_cuts,
)
from soundsight.settings import SegmentSettings
from soundsight.tasks.reference_beats import load_reference_beats, reference_metrics

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grid(duration: float, bpm: float, phase: float, per_bar: int = 4) -> tuple[np.ndarray, np.ndarray]:
    beats = np.arange(phase, duration, 60.0 / bpm)
    return beats, beats[::per_bar]


def _tileable(n: int, mn: int, mx: int) -> bool:
    return any(k * mn <= n <= k * mx for k in range(1, n // max(mn, 1) + 2))


def _check_tiling(segments, duration: float, fps: int) -> None:
    assert segments[0].start == 0.0 and segments[0].start_frame == 0
    assert segments[-1].end == duration and segments[-1].end_frame == round(duration * fps)
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start and a.end_frame == b.start_frame
        assert b.start_frame == round(b.start * fps) and abs(b.start - b.start_frame / fps) < 1e-6
    assert [s.index for s in segments] == list(range(len(segments)))
    assert all(s.frames > 0 for s in segments)


def _check_bounds(segments, duration: float, fps: int, lo: float, hi: float) -> None:
    mx = math.floor(hi * fps + 1e-6)
    mn = min(math.ceil(lo * fps - 1e-6), mx)
    n = round(duration * fps)
    frames = [s.frames for s in segments]
    assert max(frames) <= max(mx, 1) or len(frames) == 1 and n <= mx
    if _tileable(n, mn, mx):
        assert min(frames) >= mn, (frames, mn, mx)  # no cut closer than the minimum to the previous one


song = st.fixed_dictionaries(
    {
        "duration": st.floats(0.5, 240.0),
        "bpm": st.floats(50.0, 200.0),
        "phase": st.floats(0.0, 1.0),
        "fps": st.sampled_from([16, 24, 25, 30]),
        "min_s": st.floats(1.0, 5.0),
        "extra": st.floats(0.3, 5.0),
        "seed": st.integers(0, 2**31 - 1),
        "snap": st.booleans(),
    }
)


@PROPS
@given(song)
def test_random_mode_tiles_respects_bounds_and_is_seeded(p):
    lo, hi = p["min_s"], p["min_s"] + p["extra"]
    beats, downbeats = _grid(p["duration"], p["bpm"], p["phase"])
    snap = BeatSnap(beats, downbeats) if p["snap"] else None
    cuts = segment_random(p["duration"], seed=p["seed"], min_seconds=lo, max_seconds=hi, fps=p["fps"], snap=snap)
    again = segment_random(p["duration"], seed=p["seed"], min_seconds=lo, max_seconds=hi, fps=p["fps"], snap=snap)
    assert cuts == again
    segments = segments_from_cuts(cuts, p["duration"], p["fps"], beats)
    _check_tiling(segments, p["duration"], p["fps"])
    _check_bounds(segments, p["duration"], p["fps"], lo, hi)
    assert {s.reason for s in segments[:-1]} <= {"random"} and segments[-1].reason == "end"


@PROPS
@given(song, st.floats(0.0, 1.0), st.integers(1, 16))
def test_rule_based_mode_tiles_and_respects_bounds(p, threshold, beats_per_cut):
    lo, hi = p["min_s"], p["min_s"] + p["extra"]
    beats, downbeats = _grid(p["duration"], p["bpm"], p["phase"])
    rng = np.random.default_rng(p["seed"])
    nov_t = np.arange(0.0, p["duration"], 0.093)
    nov = rng.random(len(nov_t))
    snap = BeatSnap(beats, downbeats) if p["snap"] else None
    cuts = segment_rule_based(
        p["duration"],
        beats=beats,
        novelty_times=nov_t,
        novelty=nov,
        min_seconds=lo,
        max_seconds=hi,
        beats_per_cut=beats_per_cut,
        novelty_threshold=threshold,
        fps=p["fps"],
        snap=snap,
    )
    segments = segments_from_cuts(cuts, p["duration"], p["fps"], beats)
    _check_tiling(segments, p["duration"], p["fps"])
    _check_bounds(segments, p["duration"], p["fps"], lo, hi)
    assert {s.reason for s in segments[:-1]} <= {"novelty", "beat_count", "max_length"}


@PROPS
@given(song, st.sampled_from(["random", "rule_based"]), st.floats(2.0, 8.0))
def test_plan_segments_caps_at_the_video_models_clip(p, mode, clip):
    beats, downbeats = _grid(p["duration"], p["bpm"], p["phase"])
    grid = BeatGrid(p["bpm"], beats, downbeats, 0.9, strength=np.ones(len(beats)))
    nov_t = np.arange(0.0, p["duration"], 0.093)
    sr = 1000  # the grid and novelty are given: the audio only sets the duration
    y = np.zeros(int(round(p["duration"] * sr)), np.float32)
    duration = len(y) / sr
    settings = SegmentSettings(mode=mode, beat_snap=p["snap"], seed=p["seed"] % 1000)
    seg = plan_segments(
        y,
        sr,
        settings,
        song_hash="h",
        fps=p["fps"],
        max_clip_seconds=clip,
        grid=grid,
        novelty_curve=(nov_t, np.zeros(len(nov_t))),
    )
    _check_tiling(seg.segments, duration, p["fps"])
    assert max(s.frames for s in seg.segments) <= max(1, math.floor(clip * p["fps"] + 1e-6)) or len(seg.segments) == 1
    _check_bounds(seg.segments, duration, p["fps"], seg.min_seconds, seg.max_seconds)
    for s in seg.segments[:-1]:  # a snapped cut sits on a beat (up to frame rounding)
        if s.snapped_to:
            assert np.min(np.abs(beats - s.end)) <= 0.5 / p["fps"] + 1e-6
            if s.snapped_to == "downbeat":
                assert np.min(np.abs(downbeats - s.end)) <= 0.5 / p["fps"] + 1e-6


def test_snapping_reaches_a_beat_when_bounds_allow_one():
    beats, downbeats = _grid(120.0, 96.0, 0.137)
    cuts = segment_random(120.0, seed=3, min_seconds=4.0, max_seconds=8.0, fps=24, snap=BeatSnap(beats, downbeats))
    assert all(cuts.snaps) and len(cuts.snaps) == len(cuts.times)
    assert max(np.min(np.abs(beats - t)) for t in cuts.times) <= 0.5 / 24 + 1e-9
    assert np.mean([s == "downbeat" for s in cuts.snaps]) > 0.25


def test_reference_metrics_on_known_cuts():
    ref = np.arange(0.5, 30.0, 0.5)
    down = ref[::4]
    cuts = np.array([4.5, 8.51, 12.3, 40.0])  # the last is outside the reference span: not scored
    m = reference_metrics(cuts, ref + 0.004, down + 0.004, ref, down, fps=24)
    assert m["n_cuts"] == 4 and m["n_cuts_scored"] == 3
    assert m["cut_error_median_ms"] == pytest.approx(10.0, abs=1e-6)
    assert m["cuts_within_frame"] == pytest.approx(2 / 3)
    assert m["cuts_on_downbeat"] == pytest.approx(2 / 3)  # 4.5 and 8.51 are bar starts
    assert m["beat_f_measure"] == pytest.approx(1.0) and m["beat_amlt"] == pytest.approx(1.0)


def test_score_beats_follow_pickups_and_compound_meter():
    from soundsight.flows.demo import load_score, score_beat_offsets

    beats, downbeats, _ = score_beat_offsets(load_score("bach/bwv66.6"))  # 4/4, one-beat pickup
    assert beats[:3] == [0, 1, 2] and downbeats[:2] == [1, 5]
    beats, downbeats, _ = score_beat_offsets(load_score("airdsAirs/book1.abc", 50))  # 6/8, eighth-note pickup
    assert [float(b) for b in beats[:3]] == [0.5, 2.0, 3.5] and [float(d) for d in downbeats[:2]] == [0.5, 3.5]


# ---------------------------------------------------------------------------------------------
# A rendered fixture with exact beats: a chorale (4/4, pickup, tempo 96) with a drum track, ~24 s.

LEAD = 0.137  # keeps the true beats off the 24 fps grid


@pytest.fixture(scope="module")
def drummed_chorale(tmp_path_factory):
    import soundfile as sf

    from soundsight.flows.demo import load_score, render_score, write_beats_file

    audio, timing = render_score(load_score("bach/bwv66.6"), (0, 0, 0, 32), drums=True, sample_rate=22050)
    pad = np.zeros((int(round(LEAD * 22050)), 2), np.float32)
    y = np.concatenate([pad, audio]).mean(axis=1)
    timing = timing.shifted(len(pad) / 22050)
    folder = tmp_path_factory.mktemp("song")
    sf.write(folder / "chorale.wav", y, 22050)
    write_beats_file(folder / "chorale.beats.txt", timing)
    return y, timing, folder / "chorale.wav"


def test_rendered_fixture_snapped_cuts_land_on_true_beats(drummed_chorale):
    from soundsight.models.audio.beats import track_beats

    y, timing, path = drummed_chorale
    duration = len(y) / 22050
    grid = track_beats(y, 22050)
    assert grid.confidence > 0.8
    reference = load_reference_beats(path)
    assert reference is not None
    np.testing.assert_allclose(reference[0], timing.beats, atol=1e-5)
    np.testing.assert_allclose(reference[1], timing.downbeats, atol=1e-5)
    cuts = []
    for mode, seed, clip in [
        ("random", 0, math.inf),
        ("random", 1, math.inf),
        ("rule_based", 0, math.inf),
        ("rule_based", 0, 81 / 16),
    ]:
        settings = SegmentSettings(mode=mode, seed=seed)
        seg = plan_segments(y, 22050, settings, song_hash="x", fps=24, max_clip_seconds=clip, grid=grid)
        _check_tiling(seg.segments, duration, 24)
        metrics = reference_metrics([s.start for s in seg.segments[1:]], grid.beats, grid.downbeats, *reference, fps=24)
        assert metrics["beat_f_measure"] > 0.9
        assert metrics["cuts_within_frame"] == 1.0, metrics
        cuts += [s.start for s in seg.segments[1:]]
    err = np.array([np.min(np.abs(timing.beats - c)) for c in cuts])
    assert len(err) >= 10 and err.max() <= 1 / 24, err


def test_demo_song_writes_its_beats(tmp_path):
    from soundsight.flows.demo import demo_song

    path = demo_song(tmp_path / "demo.wav", repeats=1)
    beats, downbeats = load_reference_beats(path)
    assert path.is_file() and len(beats) == 36 and len(downbeats) == 9
    assert beats[0] == 0.0 and downbeats[0] == pytest.approx(0.625)  # pickup bar at 96 BPM


@pytest.mark.parametrize("tracked_bpm, expected", [(240.0, "half"), (60.0, "double"), (120.0, "as_tracked")])
def test_tempo_octave_check_recovers_the_pulse(tracked_bpm, expected):
    from soundsight.models.audio.beats import _tempo_level

    times = np.arange(0.0, 30.0, 0.0029)
    env = np.zeros_like(times)
    for t in np.arange(0.5, 29.5, 0.5):  # a 120 BPM pulse; weaker eighth notes between
        env[np.argmin(np.abs(times - t))] = 1.0
        env[np.argmin(np.abs(times - t - 0.25))] = 0.2
    tracked = np.arange(0.5, 29.0, 60.0 / tracked_bpm)
    beats, level = _tempo_level(tracked, times, env)
    assert level == expected
    assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=1e-6)
