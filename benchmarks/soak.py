"""Soak: render one short song many times with random setting changes, kills, damaged files and races.

    .venv/bin/python benchmarks/soak.py [--renders 50] [--seed 0] [--song ../shared/music/celtic.ogg]

Every render goes through the CLI, as a user runs it, against one Prefect server. Between renders
the soak randomly changes settings (fps, mode, seed, width), SIGKILLs a render part-way, corrupts
a file a finished render left (truncates a scene, garbles segments.json, deletes a clip), tampers
with one (its bytes changed in place, its size and modification time put back), or races two
renders with different settings (another fps) in the same runs folder at once. Every video a
render prints is compared byte for byte with a fresh render of the same settings in a separate
runs folder (the baseline, side by side); after a race the run folder's names must be one run's
(video.mp4 is one of the two printed videos, segments.json has that run's fps, one scene link
per segment). At the end no soundsight or server process of the soak may be left, nor any
temporary `.part` file. Prints the counts and the ratio wrong videos / completed renders, which
must be 0, as must the mixed run folders.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT.parent / "shared" / "music"
CHOICES = {
    "render.fps": ["12", "24"],
    "render.width": ["64", "96"],
    "segment.mode": ["rule_based", "random"],
    "segment.seed": ["0", "1", "2"],
}


def cli(song: Path, runs: Path, settings: dict[str, str], env: dict[str, str]) -> subprocess.Popen:
    flags = [arg for key, value in sorted(settings.items()) for arg in (f"--{key}", value)]
    return subprocess.Popen(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(song), "--output.runs_dir", str(runs),
         "--render.height", "36", "--quiet", *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


# The files a user may edit (README: "edit script.json or bible.json and render again"): a change to
# them is an edit, taken in or refused with a message, never damage the cache must undo.
EDITABLE = {"script.json", "bible.json", "reference.png"}


def damageable(runs: Path) -> list[Path]:
    """Files finished renders left in their stage folders, the user's editable ones excepted."""
    return [p for p in runs.rglob(".stages/*/*/*")
            if p.is_file() and p.suffix in (".mp4", ".json", ".wav") and p.name not in EDITABLE]  # fmt: skip


def corrupt(runs: Path, rng: random.Random) -> str:
    """Damage one file a finished render left; returns what was done."""
    files = damageable(runs)
    if not files:
        return "nothing to corrupt yet"
    victim = rng.choice(files)
    how = rng.choice(["truncate", "garble", "delete"])
    if how == "truncate":
        victim.write_bytes(victim.read_bytes()[: max(1, victim.stat().st_size // 3)])
    elif how == "garble":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 16] = os.urandom(min(16, len(data) // 2))
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    return f"{how} {victim.relative_to(runs)}"


def tamper(runs: Path, rng: random.Random) -> str:
    """Change 16 bytes of a file a finished render left, in place, and put its size and mtime back."""
    files = damageable(runs)
    if not files:
        return "nothing to tamper with yet"
    victim = rng.choice(files)
    before = victim.stat()
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    return f"tamper {victim.relative_to(runs)} (size and mtime restored)"


def mixed_run_folder(runs: Path, printed: dict[str, Path]) -> str:
    """Why the run folder's names are not one run's ('' when they are); `printed`: fps -> that run's video."""
    from soundsight.schemas import Segmentation

    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    shown = (run_dir / "video.mp4").resolve()
    owner = [fps for fps, video in printed.items() if video.resolve() == shown]
    if not owner:
        return f"video.mp4 -> {shown} is neither run's"
    segments = Segmentation.model_validate_json((run_dir / "segments.json").read_text())
    if str(segments.fps) != owner[0]:
        return f"video.mp4 of the {owner[0]} fps run beside segments.json at {segments.fps} fps"
    if len(list((run_dir / "scenes").iterdir())) != len(segments.segments):
        return "scenes/ does not match segments.json"
    return ""


def leftovers(tag: str) -> list[str]:
    """Processes whose command line or environment mentions `tag` (the soak's folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            except OSError:
                continue
            if tag.encode() in text:
                found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--renders", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--song", default=str(MUSIC / "celtic.ogg"))
    ap.add_argument("--start", type=float, default=20.0, help="excerpt start, seconds")
    ap.add_argument("--seconds", type=float, default=8.0, help="excerpt length, seconds")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    from soundsight.flows.prefect_server import temporary_server
    from soundsight.media import ffmpeg_exe

    work = Path(tempfile.mkdtemp(prefix="soundsight-soak-"))
    song = work / "song.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(args.start), "-t", str(args.seconds), "-i", args.song,
                    str(song)], check=True)  # fmt: skip
    runs, fresh_root = work / "runs", work / "fresh"
    counts = {"renders": 0, "completed": 0, "killed": 0, "failed": 0, "corruptions": 0, "tamperings": 0,
              "races": 0, "wrong": 0, "mixed": 0, "baselines": 0}  # fmt: skip
    baseline: dict[tuple, bytes] = {}
    t0 = time.monotonic()

    def check(i: int, chosen: dict[str, str], proc: subprocess.Popen, out: str, err: str) -> Path | None:
        """Count a finished render; its printed video compared with the baseline of its settings."""
        if proc.returncode != 0:
            counts["failed"] += 1
            print(f"[{i:02d}] FAILED rc={proc.returncode}: {err.strip()[-300:]}", flush=True)
            return None
        counts["completed"] += 1
        video = Path(out.strip().splitlines()[-1])
        state = tuple(sorted(chosen.items()))
        if state not in baseline:
            fresh = cli(song, fresh_root / str(len(baseline)), chosen, env)
            fout, ferr = fresh.communicate(timeout=600)
            assert fresh.returncode == 0, ferr
            baseline[state] = Path(fout.strip().splitlines()[-1]).read_bytes()
            counts["baselines"] += 1
        same = video.read_bytes() == baseline[state]
        counts["wrong"] += not same
        print(f"[{i:02d}] {'ok   ' if same else 'WRONG'} {dict(chosen)}", flush=True)
        return video

    with temporary_server() as api:
        env = dict(os.environ, PREFECT_API_URL=api, SOAK_FOLDER=str(work))
        settings = {key: values[0] for key, values in CHOICES.items()}
        for i in range(args.renders):
            key = rng.choice(list(CHOICES))
            settings[key] = rng.choice(CHOICES[key])
            action = rng.choices(["render", "kill", "corrupt", "tamper", "race"], weights=[5, 2, 2, 2, 2])[0]
            if action == "corrupt":
                counts["corruptions"] += 1
                print(f"[{i:02d}] corrupt: {corrupt(runs, rng)}", flush=True)
            if action == "tamper":
                counts["tamperings"] += 1
                print(f"[{i:02d}] {tamper(runs, rng)}", flush=True)
            if action == "race":  # this render and one at the other fps, into the same runs folder at once
                counts["races"] += 1
                other = {**settings, "render.fps": "12" if settings["render.fps"] == "24" else "24"}
                racing = [(chosen, cli(song, runs, chosen, env)) for chosen in (settings, other)]
                counts["renders"] += 2
                printed = {}
                for chosen, proc in racing:
                    out, err = proc.communicate(timeout=600)
                    if (video := check(i, chosen, proc, out, err)) is not None:
                        printed[chosen["render.fps"]] = video
                if len(printed) == 2 and (why := mixed_run_folder(runs, printed)):
                    counts["mixed"] += 1
                    print(f"[{i:02d}] MIXED run folder: {why}", flush=True)
                continue
            proc = cli(song, runs, settings, env)
            counts["renders"] += 1
            if action == "kill":
                time.sleep(rng.uniform(3.0, 12.0))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    counts["killed"] += 1
                    print(f"[{i:02d}] killed {settings}", flush=True)
                    continue
            out, err = proc.communicate(timeout=600)
            check(i, dict(settings), proc, out, err)
        # A last render sweeps what the kills left.
        final = cli(song, runs, settings, env)
        final.communicate(timeout=600)
    time.sleep(2)
    left = leftovers(str(work))
    parts = [str(p) for p in work.rglob("*.part*")]
    elapsed = time.monotonic() - t0
    print(json.dumps({**counts, "orphaned_processes": len(left), "temporary_files": len(parts),
                      "seconds": round(elapsed, 1)}, indent=1))  # fmt: skip
    for line in left + parts:
        print("  left behind:", line)
    ratio = counts["wrong"] / max(1, counts["completed"])
    print(
        f"wrong videos / completed renders = {counts['wrong']}/{counts['completed']} = {ratio:.3f} (baseline: fresh "
        f"renders of the same settings, {counts['baselines']} of them)"
    )
    print(f"run folders showing two runs' files after a race = {counts['mixed']}/{counts['races']}")
    return 0 if counts["wrong"] == 0 and counts["mixed"] == 0 and not left and not parts else 1


if __name__ == "__main__":
    raise SystemExit(main())
