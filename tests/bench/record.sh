#!/usr/bin/env bash
# Benchmark (not a test): CPU of the hub recording K camsim main streams, beside
# `ffmpeg -rtsp_transport tcp -i … -c copy -f segment` recording the same streams, in one
# run. Both read the same shared RTSP media, so the cameras encode once. Motion decoding
# is off in the hub (motion.fps = 0) so both do the same job: receive, remux, write.
# Prints the ratio and appends it to tests/bench/RESULTS.md.
#   K=2 DUR=60 SIZE=1280x720 FPS=15 KBPS=2000 bash tests/bench/record.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${K:-2}; DUR=${DUR:-60}; SIZE=${SIZE:-1280x720}; FPS=${FPS:-15}; KBPS=${KBPS:-2000}
. tests/bench/lib.sh
start_camsims main
hub_toml > "$work/hub.toml"
cat >> "$work/hub.toml" <<TOML
[recording]
mode = "continuous"
segment_seconds = 10
[motion]
fps = 0
$cams
TOML
$BIN/homehub serve --config "$work/hub.toml" 2> "$work/hub.log" &
hub=$!; pids+=($hub)
ff=()
for i in $(seq 1 "$K"); do
  mkdir -p "$work/ff$i"
  ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "${urls[$((i-1))]}" -c copy -f segment \
    -segment_time 10 -reset_timestamps 1 "$work/ff$i/%05d.mp4" &
  ff+=($!); pids+=($!)
done
measure "$hub" "${ff[@]}"
hub_bytes=$(du -sb "$work/data/recordings" | cut -f1); ff_bytes=$(du -scb "$work"/ff*/ | tail -1 | cut -f1)
line="| $(date -u +%F) | record | K=$K ${SIZE}@${FPS} ${KBPS} kbit/s, ${DUR} s | hub ${hub_cpu} % of a core | ffmpeg -c copy ${peer_cpu} % | **${ratio}×** | hub wrote ${hub_bytes} B, ffmpeg ${ff_bytes} B |"
echo "$line"
bash tests/bench/add-result.sh "$line"
