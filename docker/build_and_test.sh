#!/usr/bin/env bash
# Build soundsight's images with podman (no Docker engine or registry needed) and test them inside
# builds (a check is a build stage whose RUN fails when the check fails: `podman run` is not needed).
# Run as root from anywhere; safe to run again. Commit first: the build context is a snapshot of
# HEAD (`git archive`), never the working tree.
#
#   docker/build_and_test.sh                          # every step, in order (~35 min here, 18 of them gpu)
#   STEPS="cpu smoke worker compose" docker/build_and_test.sh   # some steps (base is built when missing)
#   FORCE=1 docker/build_and_test.sh                  # rebuild base and cpu even when up to date
#   SOUNDSIGHT_CI_CONTAINERS=1 .ci/run                # CI runs this after the test suite
#
# Steps: base   soundsight-base:bookworm from Debian's archive (build_base.sh; reused when present)
#        cpu    soundsight:cpu = docker/Dockerfile (README's ./install.sh); skipped when an image built
#               from the same context + Dockerfile exists (label soundsight.context-sha256)
#        smoke  checks/Dockerfile.checks --target smoke: `soundsight render --demo` + ffprobe
#        worker checks/Dockerfile.checks --target worker-check: PostgreSQL + Prefect server with
#               auth + deployments + process worker + one render-song run + one nightly-catalogue
#               run; 401 without auth
#        compose  podman-compose (PyPI) `config` on the context's docker/compose.yaml
#        gpu    soundsight-gpu-worker = docker/gpu-worker.Dockerfile (PyPI's CUDA torch), imports
#               checked in its last RUN; deleted afterwards unless KEEP_GPU=1; skipped when disk is short
#
# Settings (environment), all optional:
#   SRC_REPO         the checkout to snapshot (default: the one holding this script); REV (HEAD)
#   CONTEXT          build context (default /var/tmp/soundsight-ctx-<commit>, made with git archive)
#   WORK             logs and the podman-compose venv (default /var/tmp/soundsight-containers)
#   BASE_IMAGE (soundsight-base:bookworm)  CPU_IMAGE (soundsight:cpu)  GPU_IMAGE (soundsight-gpu-worker)
#   TORCH_WHEEL_DIR  folder holding torch-2.13.0+cpu*.whl, bind-mounted into the cpu build when
#                    download.pytorch.org is unreachable (default /opt/wheels if it holds one)
#   DEPLOY_COMMAND   how the worker check creates the deployments, run in /opt/soundsight
#                    (default "python -m soundsight.deployments.deploy --pool soundsight --paused";
#                    or "prefect work-pool create soundsight --type process; prefect deploy --all
#                    --prefect-file deployments/prefect.yaml")
#   AUTH_STRING      (admin:secret)   MIN_FREE_GB (25: builds are killed below it)
#   GPU_MIN_FREE_GB  free space needed before the gpu step starts (60)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"

STEPS=${STEPS:-base cpu smoke worker compose gpu}
SRC_REPO=${SRC_REPO:-$(git -C "$HERE" rev-parse --show-toplevel)}
REV=${REV:-HEAD}
COMMIT=$(git -C "$SRC_REPO" rev-parse --short "$REV") || exit 1
CONTEXT=${CONTEXT:-/var/tmp/soundsight-ctx-$COMMIT}
WORK=${WORK:-/var/tmp/soundsight-containers}
DOCKERFILE_CPU=${DOCKERFILE_CPU:-$CONTEXT/docker/Dockerfile}
DOCKERFILE_GPU=${DOCKERFILE_GPU:-$CONTEXT/docker/gpu-worker.Dockerfile}
IGNOREFILE=${IGNOREFILE:-$CONTEXT/docker/soundsight.dockerignore}
CHECKS=$CONTEXT/docker/checks
export BASE_IMAGE=${BASE_IMAGE:-soundsight-base:bookworm}
CPU_IMAGE=${CPU_IMAGE:-soundsight:cpu}
GPU_IMAGE=${GPU_IMAGE:-soundsight-gpu-worker}
DEPLOY_COMMAND=${DEPLOY_COMMAND:-python -m soundsight.deployments.deploy --pool soundsight --paused}
AUTH_STRING=${AUTH_STRING:-admin:secret}
MIN_FREE_GB=${MIN_FREE_GB:-25}
GPU_MIN_FREE_GB=${GPU_MIN_FREE_GB:-60}
LOGS=$WORK/logs
export PODMAN="podman --storage-driver vfs"
# --layers=false: one container and one commit per stage. With vfs every layer and every working
# container is a full copy of the filesystem (~2 min per copy of the 3 GB image here), so caching
# each instruction costs far more than it saves; up-to-date images are detected by label instead.
BUILD="$PODMAN build --isolation chroot --layers=false"

mkdir -p "$LOGS"
bold() { printf '\033[1m%s\033[0m\n' "$*"; }
results=()
record() { results+=("$(printf '%-8s %-7s %6ss  %s' "$1" "$2" "$3" "${4:-}")"); }
free_gb() { df -BG --output=avail /var/lib/containers 2>/dev/null | tail -n 1 | tr -dc 0-9; }
image_size() { $PODMAN image inspect --format '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.2f GB", $1/1e9}'; }

# run_logged NAME PATTERN CMD...: CMD's output goes to logs/NAME.log; lines matching PATTERN are
# echoed; a watchdog kills CMD (and only CMD's process group) if free disk drops below MIN_FREE_GB.
run_logged() {
  local name=$1 pattern=$2; shift 2
  local log=$LOGS/$name.log
  echo "\$ $*" >"$log"
  setsid "$@" >>"$log" 2>&1 &
  local pid=$!
  ( while kill -0 "$pid" 2>/dev/null; do
      if (( $(free_gb) < MIN_FREE_GB )); then
        echo "!! free disk below ${MIN_FREE_GB} GB: stopping $name" | tee -a "$log"
        kill -TERM -- "-$pid" 2>/dev/null; break
      fi
      sleep 10
    done ) &
  local watchdog=$!
  tail -n +1 -f "$log" --pid="$pid" 2>/dev/null | grep --line-buffered -E "$pattern" | sed -u 's/^/    /'
  wait "$pid"; local rc=$?
  kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
  if (( rc != 0 )); then
    echo "    ---- $name failed (exit $rc); last lines of $log:"; tail -n 40 "$log" | sed 's/^/    /'
  fi
  return $rc
}

prune() { $PODMAN image prune -f >/dev/null 2>&1 || true; }

step_base() {
  FORCE=${FORCE:-} bash "$HERE/build_base.sh" 2>&1 | tee "$LOGS/base.log" | grep -E 'build_base:|^E:' | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}

context_hash() {
  { (cd "$CONTEXT" && find . -type f ! -path './.git/*' -print0 | sort -z | xargs -0 sha256sum)
    sha256sum "$DOCKERFILE_CPU" "$IGNOREFILE" | cut -d' ' -f1; } | sha256sum | cut -c1-16
}

step_cpu() {
  local hash; hash=$(context_hash)
  if [[ -z "${FORCE:-}" ]] && [[ $($PODMAN image inspect --format '{{index .Labels "soundsight.context-sha256"}}' "$CPU_IMAGE" 2>/dev/null) == "$hash" ]]; then
    echo "    $CPU_IMAGE is up to date (context $hash); FORCE=1 rebuilds"; return 0
  fi
  local torch_args=()
  if [[ -z "${TORCH_WHEEL_DIR:-}" ]] && compgen -G "/opt/wheels/torch-2.13.0+cpu*.whl" >/dev/null; then
    TORCH_WHEEL_DIR=/opt/wheels
  fi
  if [[ -n "${TORCH_WHEEL_DIR:-}" ]]; then
    echo "    torch: the local CPU wheel from $TORCH_WHEEL_DIR (bind-mounted, not copied)"
    torch_args=(-v "$TORCH_WHEEL_DIR:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_EXTRA_INDEX_URL=)
  else
    echo "    torch: PyTorch's CPU index (Dockerfile default)"
  fi
  run_logged cpu '^(STEP|COMMIT)|install:|^ERROR|^Error|error:' \
    $BUILD -f "$DOCKERFILE_CPU" --ignorefile "$IGNOREFILE" --build-arg BASE_IMAGE="$BASE_IMAGE" \
    "${torch_args[@]}" --label soundsight.context-sha256="$hash" -t "$CPU_IMAGE" "$CONTEXT" || return 1
  prune
  echo "    $CPU_IMAGE: $(image_size "$CPU_IMAGE"), $($PODMAN image inspect --format '{{len .RootFS.Layers}}' "$CPU_IMAGE") layers"
}

# check_stage NAME TARGET [build args...]: build a stage of checks/Dockerfile.checks, then delete it.
check_stage() {
  local name=$1 target=$2; shift 2
  run_logged "$name" '^(STEP|COMMIT)|smoke:|check_video:|worker-check:|soundsight:|^  \[|flow run|^ERROR|^Error|error:' \
    $BUILD -f "$CHECKS/Dockerfile.checks" --build-arg IMAGE="$CPU_IMAGE" --target "$target" "$@" \
    -t "soundsight-check:$target" "$CHECKS"
  local rc=$?
  $PODMAN rmi -f "soundsight-check:$target" >/dev/null 2>&1; prune
  return $rc
}
step_smoke() { check_stage smoke smoke; }
step_worker() {
  check_stage worker worker-check --build-arg DEPLOY_COMMAND="$DEPLOY_COMMAND" --build-arg AUTH_STRING="$AUTH_STRING"
}

step_compose() {
  local venv=$WORK/.venv-compose
  [[ -x $venv/bin/podman-compose ]] || { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q "podman-compose==1.6.0"; } || return 1
  local file=$CONTEXT/docker/compose.yaml
  echo "    $("$venv/bin/podman-compose" --version 2>&1 | head -n 1)"
  echo "    without POSTGRES_PASSWORD/PREFECT_AUTH: $("$venv/bin/podman-compose" -f "$file" config 2>&1 | tail -n 1)"
  POSTGRES_PASSWORD=check PREFECT_AUTH="$AUTH_STRING" "$venv/bin/podman-compose" -f "$file" config >"$LOGS/compose.log" 2>&1 \
    || { tail -n 20 "$LOGS/compose.log"; return 1; }
  echo "    with them: exit 0, services: $(awk '/^services:/{s=1;next} /^[^ ]/{s=0} s && /^  [a-z-]+:$/{gsub(/[ :]/,""); printf "%s ", $0}' "$LOGS/compose.log")"
}

step_gpu() {
  local free; free=$(free_gb)
  if (( free < GPU_MIN_FREE_GB )); then
    echo "    skipped: ${free} GB free, the GPU image needs ${GPU_MIN_FREE_GB} GB (GPU_MIN_FREE_GB)"; return 2
  fi
  run_logged gpu '^(STEP|COMMIT)|gpu-worker imports|^ERROR|^Error|error:' \
    $BUILD -f "$DOCKERFILE_GPU" --ignorefile "$IGNOREFILE" --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -t "$GPU_IMAGE" "$CONTEXT" || { $PODMAN rmi -f "$GPU_IMAGE" >/dev/null 2>&1; prune; return 1; }
  prune
  echo "    $GPU_IMAGE: $(image_size "$GPU_IMAGE"), $($PODMAN image inspect --format '{{len .RootFS.Layers}}' "$GPU_IMAGE") layers"
  if [[ -z "${KEEP_GPU:-}" ]]; then $PODMAN rmi -f "$GPU_IMAGE" >/dev/null && prune && echo "    deleted $GPU_IMAGE (KEEP_GPU=1 keeps it)"; fi
}

# ---- prerequisites
[[ $(id -u) -eq 0 ]] || { echo "run as root (podman vfs storage, debootstrap)"; exit 1; }
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  bold "== apt-get install podman debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap >/dev/null || exit 1
fi
if [[ ! -d $CONTEXT ]]; then
  bold "== snapshot: git -C $SRC_REPO archive $REV ($COMMIT) -> $CONTEXT"
  mkdir -p "$CONTEXT" && git -C "$SRC_REPO" archive "$REV" | tar -x -C "$CONTEXT" || exit 1
fi
[[ -n $(git -C "$SRC_REPO" status --porcelain --untracked-files=no) ]] && echo "note: uncommitted changes in $SRC_REPO are not in the images"
bold "== soundsight containers: $(podman --version), context $CONTEXT ($COMMIT of $SRC_REPO), ${MIN_FREE_GB} GB floor, $(free_gb) GB free"

failed=0
t_all=$SECONDS
for step in base $STEPS; do
  [[ $step == base && -n ${done_base:-} ]] && continue
  [[ $step == base ]] && done_base=1
  bold "== $step  ($(date +%T), $(free_gb) GB free)"
  t0=$SECONDS
  "step_$step"; rc=$?
  dt=$((SECONDS - t0))
  case $rc in
    0) record "$step" PASSED "$dt"; bold "   $step: PASSED in ${dt} s" ;;
    2) record "$step" SKIPPED "$dt"; bold "   $step: SKIPPED" ;;
    *) record "$step" FAILED "$dt" "see $LOGS/$step.log"; bold "   $step: FAILED in ${dt} s"; failed=1
       [[ $step == base || $step == cpu ]] && break ;;
  esac
done

bold "== summary ($((SECONDS - t_all)) s, $(free_gb) GB free)"
printf '%s\n' "${results[@]}" | tee "$LOGS/summary.txt"
$PODMAN images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | tee -a "$LOGS/summary.txt"
exit $failed
