#!/bin/sh
# check_video.sh VIDEO [MIN_SECONDS]: ffprobe says it lasts > MIN_SECONDS (default 10) and has a
# video and an audio stream; prints what it found, exits 1 otherwise.
set -eu
video=$1; min=${2:-10}
[ -s "$video" ] || { echo "check_video: FAILED: no video at '$video'"; exit 1; }
dur=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$video")
streams=$(ffprobe -v error -show_entries stream=codec_type,codec_name,width,height,sample_rate -of compact=p=0 "$video")
echo "check_video: $video: duration ${dur} s, $(stat -L -c %s "$video") bytes"
echo "$streams" | sed 's/^/check_video:   stream /'
if echo "$streams" | grep -q 'codec_type=video' && echo "$streams" | grep -q 'codec_type=audio' \
   && awk -v d="$dur" -v m="$min" 'BEGIN { exit !(d + 0 > m + 0) }'; then
  echo "check_video: PASSED (> ${min} s, video + audio)"
else
  echo "check_video: FAILED (need > ${min} s, a video and an audio stream)"; exit 1
fi
