#!/bin/sh
# soundsight render --demo, then the video must last > 10 s with a video and an audio stream.
set -eu
out=$(mktemp -d)
cd "$out"
t0=$(date +%s)
SOUNDSIGHT_OUTPUT__RUNS_DIR="$out/runs" ${SMOKE_COMMAND:-soundsight render --demo} > stdout.txt
video=$(tail -n 1 stdout.txt)
echo "smoke: render took $(( $(date +%s) - t0 )) s; video: $video"
sh /checks/check_video.sh "$video"
rm -rf "$out"
