#!/usr/bin/env bash
# Benchmark (not a test): CPU of the hub's decode+detect path on K camsim substreams
# (640x360), beside `ffmpeg -rtsp_transport tcp -i …/sub -vf fps=5,scale=320:180,format=gray
# -f null -` on the same streams, in one run. Recording is off in the hub
# (recording.mode = "off": no segments, no clips) and each camera's url is the camsim's
# /sub, so the hub decodes exactly that stream and runs motion detection at motion.fps.
# Both must decode every H.264 frame; they differ in rate-dropping, scaling, grey
# conversion and (hub only) detection.
# Prints the ratio and appends it to tests/bench/RESULTS.md.
#   K=1 DUR=60 SIZE=1280x720 FPS=15 KBPS=2000 MFPS=5 bash tests/bench/motion.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${K:-1}; DUR=${DUR:-60}; SIZE=${SIZE:-1280x720}; FPS=${FPS:-15}; KBPS=${KBPS:-2000}; MFPS=${MFPS:-5}
. tests/bench/lib.sh
# No substream_url: the hub decodes the main url, here the camsim's /sub.
start_camsims sub
hub_toml > "$work/hub.toml"
cat >> "$work/hub.toml" <<TOML
[recording]
mode = "off"
[motion]
fps = $MFPS
$cams
TOML
$BIN/homehub serve --config "$work/hub.toml" 2> "$work/hub.log" &
hub=$!; pids+=($hub)
ff=()
for i in $(seq 1 "$K"); do
  ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "${urls[$((i-1))]}" \
    -vf "fps=$MFPS,scale=320:180,format=gray" -f null - &
  ff+=($!); pids+=($!)
done
measure "$hub" "${ff[@]}"
# The hub really decoded? /metrics is open to loopback without a session.
fps=$(curl -k -s "https://127.0.0.1:$web/metrics" | awk '/^homehub_camera_decoded_fps/ {print $2}' | paste -sd/ -)
dec=$(sed 's/\x1b\[[0-9;]*m//g' "$work/hub.log" | grep -o 'decoder=[^ ]*' | head -1 | cut -d= -f2 || true)
line="| $(date -u +%F) | motion | K=$K sub 640x360@${FPS} (main ${SIZE} ${KBPS} kbit/s), detect ${MFPS} fps, ${DUR} s | hub ${hub_cpu} % of a core | ffmpeg decode+fps+scale+gray ${peer_cpu} % | **${ratio}×** | hub decoded_fps ${fps:-none} (${dec:-decoder ?}); ticks hub ${hub_ticks}, ffmpeg ${peer_ticks} |"
echo "$line"
[ -n "$fps" ] || { echo "warning: no homehub_camera_decoded_fps in /metrics; hub log:" >&2; tail -20 "$work/hub.log" >&2; }
bash tests/bench/add-result.sh "$line"
