"""`AnimaticRenderer`: one storyboard clip per scene, drawn with numpy and encoded by ffmpeg."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from soundsight.media import FrameEncoder
from soundsight.models.base import ClipInfo, RenderSpec, SceneJob
from soundsight.models.render.animatic.cards import BOTTOM_BAR, TOP_BAR, caption_overlay, title_card
from soundsight.models.render.animatic.motion import Particles, audio_envelopes, camera_path, hops, onset_beats
from soundsight.models.render.animatic.scenery import LAYER_DEPTH, Canvas, build_stage, paint_light
from soundsight.models.render.animatic.shots import fallback_bible, palette_roles, read_shot

__all__ = ["RENDERER_ID", "AnimaticRenderer"]

RENDERER_ID = "animatic-v3"
SOURCE_SCALE = 2  # layers are drawn at twice the working resolution, for smooth camera moves
MARGIN_X, MARGIN_Y = 0.3, 0.2  # layer canvas beyond the view, for pans and rises, of the view size
CUT_FLASH = (0.85, 0.45)  # how far the first frames of a clip are washed with the palette's light


class AnimaticRenderer:
    """Renders a `SceneJob` as one storyboard clip of the run's visual bible.

    Parameters
    ----------
    fps : int
        Output frames per second (the animatic draws on the output grid: any frame count).
    title_seconds : float
        How long the title card stays over the start of the clip with the title card (scene 0),
        seconds; 0 for none.
    """

    name = "animatic"
    backend_id = RENDERER_ID

    def __init__(self, fps: int, *, title_seconds: float = 1.5):
        self.spec = RenderSpec(native_fps=float(fps))
        self.title_seconds = title_seconds

    # -- public ----------------------------------------------------------------------------------

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Render `job` into the MP4 `out_path` (written atomically), ``job.frames`` frames at ``job.fps``."""
        W, H = job.width, job.height
        w, h = self.working_size(job)
        bible = job.bible or fallback_bible(job.palette_hint)
        shot = read_shot(job.caption or job.prompt, bible, job.index)
        title = self._has_title(job)
        with tempfile.TemporaryDirectory() as scratch:
            inputs = [Path(scratch) / "caption.png"]
            caption_overlay(job, bible, shot, W, H).save(inputs[0], format="PNG")
            graph = f"[0:v]format=yuv420p,scale={W}:{H}:flags=bilinear[bg];[bg][1:v]overlay=0:0:format=yuv420"
            if title:
                inputs.append(Path(scratch) / "title.png")
                title_card(bible, W, H).save(inputs[1], format="PNG")
                graph += f"[captioned];[captioned][2:v]overlay=0:0:format=yuv420:enable='lt(t,{self.title_seconds:g})'"
            with FrameEncoder(
                out_path, width=w, height=h, fps=job.fps, frames=job.frames, inputs=tuple(inputs), filter_complex=graph
            ) as encoder:
                for frame in self.frames(job):
                    encoder.write(frame)
        return ClipInfo(out_path, job.frames, float(job.fps), W, H)

    @staticmethod
    def working_size(job: SceneJob) -> tuple[int, int]:
        """(width, height) in pixels the frames are drawn at: half the output size, even."""
        return max(16, job.width // 2 // 2 * 2), max(16, job.height // 2 // 2 * 2)

    def frames(self, job: SceneJob) -> Iterator[np.ndarray]:
        """The clip's frames without text, at `working_size`, (h, w, 3) uint8, ``job.frames`` of them.

        Parameters
        ----------
        job : SceneJob
            The scene; its bible (or a palette from ``palette_hint``), caption, audio and beats.

        Yields
        ------
        numpy.ndarray
            One frame.
        """
        bible = job.bible or fallback_bible(job.palette_hint)
        roles = palette_roles(bible)
        shot = read_shot(job.caption or job.prompt, bible, job.index)
        w, h = self.working_size(job)
        top, bottom = int(round(h * TOP_BAR)), int(round(h * BOTTOM_BAR))
        pw, ph = w, h - top - bottom
        S = SOURCE_SCALE
        canvas = Canvas(int(pw * S * (1 + 2 * MARGIN_X)), int(ph * S * (1 + 2 * MARGIN_Y)), pw * S, ph * S)
        stage = build_stage(shot, roles, bible, canvas, job.seed, close=shot.move == "close")
        paint_light(stage, canvas, roles, shot)
        rng = np.random.default_rng(job.seed)
        particles_kind = "dust" if shot.layout == "interior" and shot.particles in ("rain", "stars") else shot.particles
        particles = Particles(particles_kind, pw, ph, rng, roles)

        # What the music drives, one value per frame.
        n, fps = job.frames, job.fps
        audio = job.audio if job.audio is not None else np.zeros(int(job.seconds * job.sample_rate), np.float32)
        level, onset, _ = audio_envelopes(audio, job.sample_rate, n, fps)
        times = np.arange(n) / fps
        beats = np.asarray(job.beat_times, np.float64) if job.beat_times else onset_beats(onset, fps)
        hop = hops(times, beats)
        progress = times / max(times[-1], 1e-6) if n > 1 else np.zeros(1)
        zoom, off_x, off_y = camera_path(shot.move, progress, direction=1 if job.seed % 2 else -1)
        zoom = zoom + 0.025 * onset  # a bump on every onset

        # Light over time: brightness with the level, a fade or a change of light halfway.
        brightness = 0.8 + 0.2 * level
        if shot.effect == "fade":
            brightness = brightness * (1.0 - 0.6 * progress)
        wash = np.zeros(n)
        if shot.effect == "flash":
            since = times - times[n // 2]
            wash = np.where(since >= 0, 0.75 * np.exp(-np.maximum(since, 0) / 0.25), 0.0)
        if job.index > 0 and not self._has_title(job):  # the cut: a flash of the palette's light
            wash[: len(CUT_FLASH)] = np.maximum(wash[: len(CUT_FLASH)], CUT_FLASH[: min(n, len(CUT_FLASH))])
        tint = (shot.effect == "flash") & (times >= times[n // 2])

        # Static parts of the frame: bars, timeline ticks, vignette.
        base = np.zeros((h, w, 3), np.uint8)
        base[:top] = (roles.shadow * 0.6 * 255).astype(np.uint8)
        base[h - bottom :] = (roles.shadow * 0.6 * 255).astype(np.uint8)
        line_y = top - 3
        base[line_y : line_y + 1] = (roles.deep * 255).astype(np.uint8)
        tick_x = np.clip((beats / max(job.seconds, 1e-6) * w).astype(int), 0, w - 1)
        base[line_y - 3 : line_y + 1, tick_x] = (roles.mid * 255 * 0.8 + 40).clip(0, 255).astype(np.uint8)
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        vignette = (1.0 - 0.35 * (((xx / pw - 0.5) * 1.6) ** 2 + ((yy / ph - 0.5) * 1.8) ** 2)).clip(0.5, 1)[..., None]
        sx, sy, sr = stage.sun
        glow = np.exp(-(((xx - sx * pw) ** 2 + (yy - sy * ph) ** 2) / (2 * (sr * 2.5 * pw) ** 2)))[..., None]
        glow = glow * roles.light * 0.35

        u = np.arange(pw, dtype=np.float32) + 0.5
        v = np.arange(ph, dtype=np.float32) + 0.5
        fx, fy = stage.focus[0] * pw, stage.focus[1] * ph
        bump = rng.normal(0, 1, (n, 2)) * onset[:, None] * 1.2  # camera shake on onsets, view pixels

        # Layers as flat (pixels, 4) arrays of premultiplied colour and 1 - alpha; empty ones dropped.
        def flatten(layer: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
            """(pixels, 4) of premultiplied colour and 1 - alpha, and the canvas box holding anything."""
            rows, cols = np.flatnonzero(layer[..., 3].max(axis=1) > 0), np.flatnonzero(layer[..., 3].max(axis=0) > 0)
            out = layer.reshape(-1, 4).copy()
            out[:, 3] = 1.0 - out[:, 3]
            box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) if len(rows) else (0, 0, 0, 0)
            return out, box

        layers = [(*flatten(lay), depth) for lay, depth in stage.layers]
        layers = [entry for entry in layers if entry[1][1] > entry[1][0]]  # empty layers drawn no more
        far_layers = [entry for entry in layers if entry[2] <= LAYER_DEPTH["mid"]]
        near_layers = [entry for entry in layers if entry[2] > LAYER_DEPTH["mid"]]
        figures, figure_box = flatten(stage.figures)
        sky = stage.sky.reshape(-1, 3)

        def indices(depth: float, i: int, lift: float = 0.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
            """Canvas rows and columns seen by the view's rows and columns (both increasing)."""
            z = 1.0 + (zoom[i] - 1.0) * (0.3 + depth)
            xs = canvas.x0 + S * (fx + (u - fx) / z) + depth * (off_x[i] * canvas.view_w + bump[i, 0] * S) + shift
            ys = canvas.y0 + S * (fy + (v - fy) / z) + depth * (off_y[i] * canvas.view_h + bump[i, 1] * S) - lift
            return np.clip(ys.astype(np.intp), 0, canvas.h - 1), np.clip(xs.astype(np.intp), 0, canvas.w - 1)

        def over(picture: np.ndarray, flat: np.ndarray, box, depth: float, i: int, **move) -> None:
            """Composite a layer onto `picture`, gathering only the view rows and columns its box covers.

            One gather through a flat index (np.take is several times faster than 2-D fancy indexing).
            """
            yi, xi = indices(depth, i, **move)
            r0, r1 = np.searchsorted(yi, box[0]), np.searchsorted(yi, box[1])
            c0, c1 = np.searchsorted(xi, box[2]), np.searchsorted(xi, box[3])
            if r1 <= r0 or c1 <= c0:
                return
            block = np.take(flat, yi[r0:r1, None] * canvas.w + xi[None, c0:c1], axis=0)
            view = picture[r0:r1, c0:c1]
            view *= block[..., 3:]
            view += block[..., :3]

        figure_depth = LAYER_DEPTH["mid"]
        hop_height = canvas.view_h * (0.03 if shot.action == "rest" else 0.06)
        # Running characters cross the frame (the camera keeps part of the way with them); rising
        # ones float.
        travel = (progress - 0.5) * canvas.view_w * 0.35 if shot.action == "run" else np.zeros(n)
        float_y = np.sin(times * 2.2) * canvas.view_h * 0.02 if shot.action == "rise" else np.zeros(n)
        for i in range(n):
            yi, xi = indices(LAYER_DEPTH["sky"], i)
            picture = np.take(sky, yi[:, None] * canvas.w + xi[None, :], axis=0)
            picture += glow * level[i]
            for flat, box, depth in far_layers:
                over(picture, flat, box, depth, i)
            over(
                picture, figures, figure_box, figure_depth, i, lift=-hop[i] * hop_height + float_y[i], shift=-travel[i]
            )
            for flat, box, depth in near_layers:
                over(picture, flat, box, depth, i)
            particles.draw(picture, times[i], 0.6 + 1.2 * onset[i])
            picture *= vignette * (255.0 * brightness[i])
            if tint[i]:
                picture = picture * 0.8 + roles.accent * (0.2 * 255)
            if wash[i] > 0:
                picture = picture * (1 - wash[i]) + roles.light * (255 * wash[i])
            frame = base.copy()
            frame[top : h - bottom] = np.clip(picture, 0, 255, out=picture)
            play = int(progress[i] * (w - 1))
            frame[line_y : line_y + 1, : play + 1] = (roles.accent * 255).astype(np.uint8)
            recent = tick_x[(beats <= times[i]) & (beats > times[i] - 0.15)]
            frame[line_y - 5 : line_y + 1, recent] = 255
            yield frame

    # -- helpers ---------------------------------------------------------------------------------

    def _has_title(self, job: SceneJob) -> bool:
        wanted = job.index == 0 if job.title_card is None else job.title_card
        return bool(wanted) and self.title_seconds > 0

    _title_card = staticmethod(title_card)  # the card alone (tests draw it)
