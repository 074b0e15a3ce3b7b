"""Palette matching in CIELAB (issue 14): an off-palette clip comes out near the bible's palette."""

from __future__ import annotations

import numpy as np
import pytest

from soundsight.media import FrameEncoder
from soundsight.models.render.palette import (
    PaletteTransfer,
    assign_targets,
    dominant_colours,
    match_clip_file,
    match_palette,
    palette_distance,
    palette_lab,
    read_clip,
)
from soundsight.models.script.bible import palette_for

# The target: at full strength, the clip's dominant colours end within this mean CIEDE2000 of the
# palette (about two just-noticeable differences); a deliberately off-palette clip starts > 25.
TARGET_DELTA_E = 6.0
OFF_PALETTE_DELTA_E = 25.0


def off_palette_clip(frames: int = 24, height: int = 90, width: int = 160, seed: int = 1) -> np.ndarray:
    """A green-yellow field, a moving yellow disc, a blue band and noise: far from a dark moody palette."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        img = np.stack([0.2 + 0.3 * xx, 0.6 + 0.3 * yy, np.full_like(xx, 0.2)], axis=-1)
        img[((xx - 0.2 - 0.6 * f / frames) ** 2 + (yy - 0.5) ** 2) < 0.02] = [1.0, 0.9, 0.1]
        img[yy > 0.8] = [0.3, 0.5, 0.9]
        clip[f] = np.clip((img + rng.normal(0, 0.02, img.shape)) * 255, 0, 255)
    return clip


@pytest.fixture(scope="module")
def moody():
    return palette_for("Dark and moody", "Dark and tense")


def test_off_palette_clip_comes_within_the_target(moody):
    clip = off_palette_clip()
    matched, report = match_palette(clip, moody, strength=1.0)
    assert report.delta_e_before > OFF_PALETTE_DELTA_E
    assert report.delta_e_after < TARGET_DELTA_E
    assert matched.shape == clip.shape and matched.dtype == np.uint8
    # Measured independently of the report: k-means on the matched frames themselves.
    centres, shares = dominant_colours(matched, seed=3)
    assert palette_distance(centres, shares, palette_lab(moody)) < TARGET_DELTA_E
    info = report.info()
    assert set(info) == {"palette_strength", "palette_delta_e_before", "palette_delta_e_after"}


def test_strength_moves_the_clip_part_of_the_way(moody):
    clip = off_palette_clip()
    unchanged, zero = match_palette(clip, moody, strength=0.0)
    assert unchanged is clip and zero.delta_e_after == pytest.approx(zero.delta_e_before)
    half = match_palette(clip, moody, strength=0.5)[1].delta_e_after
    full = match_palette(clip, moody, strength=1.0)[1].delta_e_after
    assert full < half < zero.delta_e_before
    with pytest.raises(ValueError):
        PaletteTransfer(moody, strength=1.5)


def test_an_on_palette_clip_is_left_nearly_alone(moody):
    colours = np.array([c.rgb() for c in moody], np.uint8)
    rng = np.random.default_rng(0)
    clip = colours[rng.integers(0, len(colours), (6, 12, 16))].repeat(6, axis=1).repeat(6, axis=2)
    matched, report = match_palette(clip, moody, strength=1.0)
    assert report.delta_e_before < 2.0 and report.delta_e_after < 2.0
    assert np.abs(matched.astype(int) - clip).mean() < 3.0


def test_texture_inside_a_colour_region_is_kept(moody):
    clip = off_palette_clip()
    matched, _ = match_palette(clip, moody, strength=1.0)
    # The noise survives: the matched clip is not posterised into flat palette colours.
    before = np.std(clip[:, 10:30, 10:40].astype(float), axis=(1, 2)).mean()
    after = np.std(matched[:, 10:30, 10:40].astype(float), axis=(1, 2)).mean()
    assert after > 0.3 * before


def test_targets_keep_lightness_order():
    palette = palette_lab(np.array([[10, 10, 10], [90, 60, 40], [200, 170, 120], [250, 240, 220]], np.uint8))
    centres = palette_lab(np.array([[0, 40, 0], [40, 160, 40], [120, 250, 120]], np.uint8))
    picks = assign_targets(centres, np.full(3, 1 / 3), palette)
    assert list(palette[picks, 0]) == sorted(palette[picks, 0])  # darker stays darker
    assert len(set(picks)) == 3  # three distinct greens -> three distinct palette colours


def test_matching_an_encoded_clip_keeps_its_frames(tmp_path, moody):
    clip = off_palette_clip(frames=13, height=64, width=96)
    source = tmp_path / "clip.mp4"
    with FrameEncoder(source, width=96, height=64, fps=24, frames=13) as encoder:
        for frame in clip:
            encoder.write(frame)
    report = match_clip_file(source, source, moody, strength=1.0)
    frames, fps = read_clip(source)
    assert frames.shape == (13, 64, 96, 3) and fps == 24
    assert report.delta_e_after < TARGET_DELTA_E
    centres, shares = dominant_colours(frames)
    assert palette_distance(centres, shares, palette_lab(moody)) < TARGET_DELTA_E + 2.0  # H.264 adds a little
