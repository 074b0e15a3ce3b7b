r"""End to end on a GPU box: `soundsight render` as a user runs it, cold then fully cached, and where the time goes.

Runs ``soundsight render SONG --render.backend wan --render.model MODEL --render.steps 50`` (plus
``--quality draft`` with ``--draft-lora`` and ``--tiny-decoder``, plus ``--extra`` flags) against
one Prefect server (PREFECT_API_URL, else one on 127.0.0.1:4200, else one this script starts and
stops first, outside the timings), then again with nothing changed; with ``--temporary-server`` the
unchanged command once more with no server running (the CLI then starts its own, as a user without
one sees); with ``--final-scenes K`` once more with the first K scenes in final quality (the others
stay cached: final quality's per-scene cost on the same GPU, for the record). It reads:

- the Prefect API: the flow run and every task run (state, start, end, run time);
- the renderer's own record (`soundsight.models.render.diffusion.stats`, which
  benchmarks/worker_hooks writes to a file with ``BENCH_RENDER_STATS``: one JSON line per pipeline
  build and per scene from every Dask worker: ``render_s`` = the seconds holding the pipeline
  (pipeline call and decode), ``started`` / ``ended`` = wall clock when the scene took the
  pipeline and when its clip was written);
- the CLI's progress lines (``[  12.3s] ...``) as a fallback timeline.

and prints: the card, the song's duration, the wall time from the command to the video and their
ratio (issue #29's goal for a draft of a song of 3 minutes or more on one GPU: at most 1.0), the
GPU seconds per scene, where the wall time went (consecutive spans: before the flow, CPU stages,
waiting for the GPU workers, the GPU busy and idle while rendering, the last encode, assemble),
the per-stage timeline, the orchestration overhead (flow wall time - the busiest worker's time
inside pipeline calls) and the cached re-runs. A JSON report goes to ``--out`` after every run.

    python benchmarks/gpu/make_models.py /opt/models    # Wan 1.3B + UMT5-XXL, draft LoRA, tiny decoder (random)
    python benchmarks/gpu_end_to_end.py --song ../shared/music/digital_pursuit.ogg \
        --model /opt/models/wan13-random --quality draft --draft-lora /opt/models/draft_lora.safetensors \
        --tiny-decoder /opt/models/taew2_1.safetensors --temporary-server --final-scenes 3 --out /tmp/e2e.json
    python benchmarks/gpu_end_to_end.py --tiny --out /tmp/e2e-tiny.json    # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLI = "import sys; from soundsight.flows.cli import main; sys.exit(main())"
PROGRESS = re.compile(r"^\s*\[\s*([\d.]+)s\]\s*(.*)$")


def healthy(api: str) -> bool:
    """True when the Prefect server at `api` (``.../api``) answers its health check."""
    try:
        with urllib.request.urlopen(api.rstrip("/") + "/health", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - anything but an answer means no server
        return False


def ensure_server(port: int) -> subprocess.Popen | None:
    """Point PREFECT_API_URL at a running server, starting one (returned, to stop) if there is none."""
    if os.environ.get("PREFECT_API_URL") and healthy(os.environ["PREFECT_API_URL"]):
        return None
    local = "http://127.0.0.1:4200/api"
    if healthy(local):
        os.environ["PREFECT_API_URL"] = local
        return None
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=tempfile.mkdtemp(prefix="pf-"))
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    cmd = [prefect] if prefect else [sys.executable, "-m", "prefect"]
    proc = subprocess.Popen(
        [*cmd, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    for _ in range(240):
        if healthy(api):
            os.environ["PREFECT_API_URL"] = api
            return proc
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the Prefect server on port {port} did not become healthy")


def run_cli(song: str, flags: list[str], stats: Path, own_server: bool = False) -> dict:
    """One `soundsight render`: wall seconds, exit status, progress lines (seconds, message), video path.

    `own_server`: without PREFECT_API_URL, so the CLI starts (and stops) a temporary Prefect server.
    """
    stats.unlink(missing_ok=True)
    env = dict(os.environ, SOUNDSIGHT_RENDER__SEED="0")
    if own_server:  # a Prefect home of its own, as on a user's machine (not the benchmark's server's)
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_HOME"] = str(stats.parent / "prefect-home")
    # The CLI and its Dask workers append the renderer's records to `stats` (benchmarks/worker_hooks).
    hooks = str(ROOT / "benchmarks" / "worker_hooks")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [hooks, env.get("PYTHONPATH")])), BENCH_RENDER_STATS=str(stats))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CLI, "render", song, *flags], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = []
    for line in p.stderr.splitlines():
        m = PROGRESS.match(line)
        if m:
            lines.append((float(m.group(1)), m.group(2)))
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
    return {"wall_s": wall, "rc": p.returncode, "progress": lines, "video": p.stdout.strip().splitlines()[-1:]}


def flow_and_tasks() -> tuple[dict, list[dict]]:
    """The latest render-song flow run and its task runs, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect read its settings when first imported (this script's environment() imports it before
    # ensure_server sets PREFECT_API_URL): name the server explicitly, or the client would start a
    # temporary server of its own and read another database.
    api = os.environ.get("PREFECT_API_URL")
    with temporary_settings(updates={PREFECT_API_URL: api} if api else {}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["render-song"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        if not runs:
            return {}, []
        fr = runs[0]
        tasks, page = [], None
        while page is None or len(page) == 200:  # the API returns at most 200 per call
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])), limit=200, offset=len(tasks)
            )
            tasks += page
    t0 = fr.start_time
    flow = {
        "name": fr.name,
        "state": fr.state_name,
        "wall_s": (fr.end_time - fr.start_time).total_seconds() if fr.end_time and fr.start_time else None,
        "start_epoch": fr.start_time.timestamp() if fr.start_time else None,
    }
    rows = []
    for t in tasks:
        rows.append(
            {
                "name": t.name,
                "state": t.state_name,
                "start_s": (t.start_time - t0).total_seconds() if t.start_time and t0 else None,
                "end_s": (t.end_time - t0).total_seconds() if t.end_time and t0 else None,
                "run_s": t.total_run_time.total_seconds() if t.total_run_time else 0.0,
            }
        )
    return flow, rows


def stage_of(task_name: str) -> str:
    """`render-scene-007` -> `render-scene`; other task runs keep their name up to a trailing ``-N``."""
    return re.sub(r"(-\d+|-[0-9a-f]{3})+$", "", task_name)


def timeline(tasks: list[dict]) -> list[dict]:
    """Per stage: first start, last end (seconds after the flow started), task runs, states, summed run time."""
    by: dict[str, list[dict]] = {}
    for t in tasks:
        by.setdefault(stage_of(t["name"]), []).append(t)
    rows = []
    for stage, ts in by.items():
        starts = [t["start_s"] for t in ts if t["start_s"] is not None]
        ends = [t["end_s"] for t in ts if t["end_s"] is not None]
        states: dict[str, int] = {}
        for t in ts:
            states[t["state"]] = states.get(t["state"], 0) + 1
        rows.append(
            {
                "stage": stage,
                "first_start_s": round(min(starts), 2) if starts else None,
                "last_end_s": round(max(ends), 2) if ends else None,
                "task_runs": len(ts),
                "states": ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
                "run_s": round(sum(t["run_s"] for t in ts), 2),
            }
        )
    return sorted(rows, key=lambda r: (r["first_start_s"] is None, r["first_start_s"] or 0))


def read_stats(path: Path) -> tuple[list[dict], list[dict]]:
    """The renderer's build and scene records."""
    if not path.is_file():
        return [], []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if r.get("event") == "build"], [r for r in recs if r.get("event") == "scene"]


def spread(values: list[float]) -> dict:
    """Median, 90th percentile and max of `values` (seconds), rounded; {} when there are none."""
    if not values:
        return {}
    xs = sorted(values)
    return {"median": round(statistics.median(xs), 3), "p90": round(xs[math.ceil(0.9 * len(xs)) - 1], 3),
            "max": round(xs[-1], 3), "n": len(xs)}  # fmt: skip


def breakdown(run: dict, flow: dict, tasks: list[dict], builds: list[dict], scenes: list[dict]) -> dict:
    """Where the CLI's wall time went, in consecutive spans that add up to it (seconds), for a one-GPU run.

    before_flow: process start, imports, settings, server checks until the flow run started (CLI
    wall - flow wall); cpu_stages: the flow's start to the end of the last stage before rendering;
    waiting_for_gpu: from there until the first scene took the pipeline (GPU workers and pipeline
    load not hidden behind the CPU stages); gpu_busy: time holding the pipeline, all scenes (the
    first one's compile included); gpu_idle_between_scenes: gaps between one scene releasing the
    pipeline and the next taking it (what the overlap did not hide); last_encode: the last pipeline
    release to the last clip written; assemble_and_after: from there to the CLI's exit (assemble,
    closing the workers, the CLI's own exit). Also: the pipeline builds, and when the pipeline was
    ready (seconds after the flow's start).
    """
    t0 = flow.get("start_epoch")
    if not scenes or t0 is None:
        return {}
    wall = run["wall_s"]
    flow_wall = flow.get("wall_s") or wall
    before = [t["end_s"] for t in tasks if not t["name"].startswith(("render-scene", "assemble")) and t["end_s"]]
    cpu_end = max(before, default=0.0)
    holds = sorted((s["started"] - t0, s["started"] - t0 + s["render_s"]) for s in scenes)
    gaps = sum(max(0.0, b[0] - a[1]) for a, b in zip(holds, holds[1:]))
    busy = sum(s["render_s"] for s in scenes)
    last_written = max(s["ended"] for s in scenes) - t0
    return {
        "before_flow": round(wall - flow_wall, 2),
        "cpu_stages": round(cpu_end, 2),
        "waiting_for_gpu": round(holds[0][0] - cpu_end, 2),
        "gpu_busy": round(busy, 2),
        "gpu_idle_between_scenes": round(gaps, 2),
        "last_encode": round(last_written - holds[-1][1], 2),
        "assemble_and_after": round(wall - (wall - flow_wall) - last_written, 2),
        "pipeline_builds_s": [round(b["build_s"], 2) for b in builds],
        "pipeline_ready_at_s": [round(b["ended"] - t0, 2) for b in builds if "ended" in b],
    }


def analyse(run: dict, flow: dict, tasks: list[dict], builds: list[dict], scenes: list[dict]) -> dict:
    """Orchestration overhead: flow wall - the busiest worker's pipeline time; and per render task."""
    per_worker: dict[int, float] = {}
    for s in scenes:
        per_worker[s["pid"]] = per_worker.get(s["pid"], 0.0) + s["render_s"]
    busiest_pid = max(per_worker, key=per_worker.get, default=None)
    busiest = per_worker.get(busiest_pid, 0.0)
    busiest_build = sum(b["build_s"] for b in builds if b["pid"] == busiest_pid)
    wall = flow.get("wall_s") or run["wall_s"]
    by_index = {s["index"]: s for s in scenes}
    per_task = []
    for t in tasks:
        m = re.match(r"render-scene-(\d+)", t["name"])
        if m and int(m.group(1)) in by_index and t["state"] == "Completed":
            per_task.append(t["run_s"] - by_index[int(m.group(1))]["render_s"])
    return {
        "cli_wall_s": round(run["wall_s"], 2),
        "flow_wall_s": None if flow.get("wall_s") is None else round(flow["wall_s"], 2),
        "scenes_rendered": len(scenes),
        "workers": len(per_worker),
        "pipeline_builds": [
            {"pid": b["pid"], "quality": b["quality"], "build_s": round(b["build_s"], 2)} for b in builds
        ],
        "gpu_s_in_renderer_calls": round(sum(per_worker.values()), 2),
        "busiest_worker_gpu_s": round(busiest, 2),
        "orchestration_overhead_s": round(wall - busiest, 2),
        "overhead_without_pipeline_builds_s": round(wall - busiest - busiest_build, 2),
        "overhead_share": round((wall - busiest) / wall, 3) if wall else None,
        "overhead_per_render_task_s": {
            "median": round(statistics.median(per_task), 3) if per_task else None,
            "mean": round(statistics.fmean(per_task), 3) if per_task else None,
            "max": round(max(per_task), 3) if per_task else None,
            "tasks": len(per_task),
        },
        "first_scene_s": [round(s["total_s"], 2) for s in scenes[: len(per_worker)]],
        "gpu_s_per_scene": spread([s["render_s"] for s in scenes]),
        "gpu_s_per_scene_after_the_first": spread(
            [s["render_s"] for s in sorted(scenes, key=lambda s: s["started"])][1:]
        ),
        "decode_s_per_scene": spread([s.get("decode_s", 0.0) for s in scenes]),
        "decoders": sorted({s.get("decoder", "vae") for s in scenes}),
        "frames_per_scene": spread([s["frames"] for s in scenes]),
        "scene_total_s": spread([s["total_s"] for s in scenes]),
    }


def report(
    name: str, run: dict, flow: dict, tasks: list[dict], builds: list[dict], scenes: list[dict], song_s: float
) -> dict:
    """Print and return one run's timeline and overhead."""
    out = {"run": name, "rc": run["rc"], "video": run["video"], "flow": flow, "timeline": timeline(tasks)}
    out["overhead"] = analyse(run, flow, tasks, builds, scenes)
    out["song_s"] = round(song_s, 2)
    out["wall_over_song"] = round(run["wall_s"] / song_s, 3) if song_s else None
    out["where_the_time_went"] = breakdown(run, flow, tasks, builds, scenes)
    if not tasks:  # no API: the CLI's own progress lines
        out["progress"] = run["progress"]
    print(
        f"\n== {name}: exit {run['rc']}, CLI wall {run['wall_s']:.1f} s = {out['wall_over_song']} x the song "
        f"({song_s:.1f} s), flow {flow.get('wall_s')} s"
    )
    print(f"{'stage':<22}{'start s':>9}{'end s':>9}{'runs':>6}{'run s':>10}  states")
    for r in out["timeline"]:
        print(
            f"{r['stage']:<22}{r['first_start_s'] or 0:>9.1f}{r['last_end_s'] or 0:>9.1f}"
            f"{r['task_runs']:>6}{r['run_s']:>10.1f}  {r['states']}"
        )
    for t, msg in out.get("progress", []):
        print(f"{t:>9.1f} s  {msg}")
    for k, v in out["overhead"].items():
        print(f"  {k}: {v}")
    for k, v in out["where_the_time_went"].items():
        print(f"  where: {k:<26}{v if isinstance(v, list) else f'{v:9.1f}'} s")
    return out


def environment(kind: str) -> dict:
    """The card (nvidia-smi), the date, the device kind given, and the versions that matter."""
    env = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "device_kind": kind, "cpus": os.cpu_count()}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)  # fmt: skip
        env["gpus"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    for name in ("torch", "diffusers", "transformers", "prefect", "distributed", "numba", "librosa"):
        try:
            env[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - not installed: not part of the record
            pass
    return env


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--song", default=str(ROOT.parent / "shared" / "music" / "digital_pursuit.ogg"), help="196 s")
    ap.add_argument("--model", default="", help="pipeline folder (benchmarks/gpu/make_models.py makes one)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--runs-dir", default="", help="default: a fresh temporary folder")
    ap.add_argument("--extra", default="", help="more CLI flags")
    ap.add_argument("--quality", choices=("final", "draft"), default="final")
    ap.add_argument("--draft-lora", default="", help="draft LoRA file (render.draft_lora); empty: the default")
    ap.add_argument("--tiny-decoder", default="", help="TAEHV file (render.draft_decoder); empty: the default")
    ap.add_argument("--temporary-server", action="store_true", help="also the cached re-run with no server running")
    ap.add_argument("--final-scenes", type=int, default=0, help="then re-render the first K scenes in final quality")
    ap.add_argument("--device-kind", default="", help="for the record, e.g. nvidia-h100-x1")
    ap.add_argument("--port", type=int, default=4321, help="for a server this script starts")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny checkpoint, 32x32, 2 steps")
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args(argv)

    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="soundsight-e2e-"))
    model = args.model
    flags = ["--render.backend", "wan", "--output.runs_dir", str(runs)]
    if args.tiny:
        from benchmarks.gpu.make_checkpoint import make_checkpoint

        model = model or str(runs / "tiny-wan")
        if not (Path(model) / "model_index.json").is_file():
            make_checkpoint(Path(model), tiny=True)
        flags += ["--render.model_width", "32", "--render.model_height", "32", "--render.dtype", "float32"]
        flags += ["--render.device", "cpu", "--render.steps", "2"]
    else:
        flags += ["--render.steps", str(args.steps)]
    if not model:
        ap.error("--model is required (a pipeline folder; benchmarks/gpu/make_models.py makes one)")
    flags += ["--render.model", model, "--render.quality", args.quality]
    if args.draft_lora:
        flags += ["--render.draft_lora", args.draft_lora]
    if args.tiny_decoder:
        flags += ["--render.draft_decoder", args.tiny_decoder]
    flags += args.extra.split()
    import soundfile as sf

    song_s = sf.info(args.song).duration
    results = {"environment": environment(args.device_kind), "song": args.song, "song_s": round(song_s, 2),
               "flags": flags, "runs": []}  # fmt: skip
    print(json.dumps(results["environment"]))
    t_server = time.perf_counter()
    server = ensure_server(args.port)
    results["server_start_s"] = round(time.perf_counter() - t_server, 2) if server is not None else None
    results["api"] = os.environ.get("PREFECT_API_URL")
    try:
        plan = [("cold", flags, False), ("cached", flags, False)]
        if args.temporary_server:
            plan.append(("cached, temporary server", flags, True))
        if args.final_scenes:
            chosen = ",".join(str(i) for i in range(args.final_scenes))
            plan.append((f"final scenes {chosen}", [*flags, "--render.final_scenes", chosen], False))
        for name, run_flags, own_server in plan:
            stats = runs / f"render_stats_{len(results['runs'])}.jsonl"
            run = run_cli(args.song, run_flags, stats, own_server)
            try:
                flow, tasks = flow_and_tasks()
            except Exception as exc:  # noqa: BLE001 - report without the API
                print(f"(Prefect API unreadable: {exc})")
                flow, tasks = {}, []
            if own_server:  # the flow ran on the CLI's temporary server, gone now: no API record of it
                flow, tasks = {}, []
            results["runs"].append(report(name, run, flow, tasks, *read_stats(stats), song_s))
            if args.out:  # after every run: a call cut short by its time limit keeps what finished
                args.out.write_text(json.dumps(results, indent=1, default=str))
            if run["rc"] != 0:
                break
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    summary(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0 if all(r["rc"] == 0 for r in results["runs"]) else 1


def summary(results: dict) -> None:
    """The lines RESULTS_video.md quotes: card, date, ratio, cached re-runs, per-scene GPU seconds."""
    env, runs = results["environment"], {r["run"]: r for r in results["runs"]}
    card = ", ".join(env.get("gpus", [])) or "no GPU"
    print(f"\n== summary: {card}; device kind {env['device_kind'] or '?'}; {env['date_utc']} UTC")
    print(f"song {results['song_s']} s; Prefect server started by this script in {results['server_start_s']} s")
    if "cold" in runs:
        cold = runs["cold"]
        o = cold["overhead"]
        print(f"cold: {o['cli_wall_s']} s = {cold['wall_over_song']} x the song; {o['scenes_rendered']} scenes, "
              f"decoders {o['decoders']}; GPU s/scene {o['gpu_s_per_scene']}; after the first "
              f"{o['gpu_s_per_scene_after_the_first']}; decode s/scene {o['decode_s_per_scene']}")  # fmt: skip
        print("where the time went: " + ", ".join(f"{k} {v}" for k, v in cold["where_the_time_went"].items()))
    for name in ("cached", "cached, temporary server"):
        if name in runs:
            print(f"{name}: {runs[name]['overhead']['cli_wall_s']} s")
    for name, run in runs.items():
        if name.startswith("final"):
            o = run["overhead"]
            print(f"{name}: {o['scenes_rendered']} scenes in final quality; GPU s/scene {o['gpu_s_per_scene']}; "
                  f"pipeline builds {o['pipeline_builds']}; CLI wall {o['cli_wall_s']} s")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
