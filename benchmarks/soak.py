"""Soak: render one short song many times with random setting changes, kills and corrupted files.

    .venv/bin/python benchmarks/soak.py [--renders 50] [--seed 0] [--song ../shared/music/celtic.ogg]

Every render goes through the CLI, as a user runs it, against one Prefect server. Between renders
the soak randomly changes settings (fps, mode, seed, width), SIGKILLs a render part-way, or
corrupts a file a finished render left (truncates a scene, garbles segments.json, deletes a clip).
Every video a render reports is compared byte for byte with a fresh render of the same settings
in a separate runs folder (the baseline, side by side). At the end no soundsight or server
process of the soak may be left, nor any temporary `.part` file. Prints the counts and the ratio
wrong videos / completed renders, which must be 0.
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


def corrupt(runs: Path, rng: random.Random) -> str:
    """Damage one file a finished render left; returns what was done."""
    files = [p for p in runs.rglob(".stages/*/*/*") if p.is_file() and p.suffix in (".mp4", ".json", ".wav")]
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
    counts = {"renders": 0, "completed": 0, "killed": 0, "failed": 0, "corruptions": 0, "wrong": 0, "baselines": 0}
    baseline: dict[tuple, bytes] = {}
    t0 = time.monotonic()
    with temporary_server() as api:
        env = dict(os.environ, PREFECT_API_URL=api, SOAK_FOLDER=str(work))
        settings = {key: values[0] for key, values in CHOICES.items()}
        for i in range(args.renders):
            key = rng.choice(list(CHOICES))
            settings[key] = rng.choice(CHOICES[key])
            action = rng.choices(["render", "kill", "corrupt"], weights=[6, 2, 2])[0]
            if action == "corrupt":
                counts["corruptions"] += 1
                print(f"[{i:02d}] corrupt: {corrupt(runs, rng)}", flush=True)
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
            if proc.returncode != 0:
                counts["failed"] += 1
                print(f"[{i:02d}] FAILED rc={proc.returncode}: {err.strip()[-300:]}", flush=True)
                continue
            counts["completed"] += 1
            video = Path(out.strip().splitlines()[-1])
            state = tuple(sorted(settings.items()))
            if state not in baseline:
                fresh = cli(song, fresh_root / str(len(baseline)), settings, env)
                fout, ferr = fresh.communicate(timeout=600)
                assert fresh.returncode == 0, ferr
                baseline[state] = Path(fout.strip().splitlines()[-1]).read_bytes()
                counts["baselines"] += 1
            same = video.read_bytes() == baseline[state]
            counts["wrong"] += not same
            print(f"[{i:02d}] {'ok   ' if same else 'WRONG'} {dict(settings)}", flush=True)
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
    return 0 if counts["wrong"] == 0 and not left and not parts else 1


if __name__ == "__main__":
    raise SystemExit(main())
