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
BIN=target/release
# Build when missing or older than the sources (a stale binary may lack the detector).
[ -x $BIN/homehub ] && [ -x $BIN/homehub-camsim ] \
  && [ -z "$(find src Cargo.toml Cargo.lock -newer $BIN/homehub -print -quit 2>/dev/null)" ] \
  || cargo build --release --bins
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # utime+stime of a pid, in clock ticks
  awk '{print $14+$15}' "/proc/$1/stat"
}
cams=""; urls=()
for i in $(seq 1 "$K"); do
  p=$(port)
  # Constant motion, so detection has work on every frame (the camsim's /sub is
  # 640x360 at the same fps as /main).
  $BIN/homehub-camsim --rtsp 127.0.0.1:$p --size "$SIZE" --fps "$FPS" --bitrate "$KBPS" --motion 0-100000 > "$work/camsim$i.log" 2>&1 &
  pids+=($!)
  urls+=("rtsp://127.0.0.1:$p/sub")
  # No substream_url: the hub decodes the main url, here the camsim's /sub.
  cams+=$'[[camera]]\n'"name = \"Bench $i\""$'\n'"url = \"rtsp://127.0.0.1:$p/sub\""$'\n'
done
sleep 2
web=$(port)
cat > "$work/hub.toml" <<TOML
data_dir = "$work/data"
[web]
listen = "127.0.0.1:$web"
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
sleep 8   # connect and settle
h0=$(ticks $hub); f0=0; for p in "${ff[@]}"; do f0=$((f0 + $(ticks $p))); done
sleep "$DUR"
h1=$(ticks $hub); f1=0; for p in "${ff[@]}"; do f1=$((f1 + $(ticks $p))); done
# The hub really decoded? /metrics is open to loopback without a session.
fps=$(curl -k -s "https://127.0.0.1:$web/metrics" | awk '/^homehub_camera_decoded_fps/ {print $2}' | paste -sd/ -)
dec=$(sed 's/\x1b\[[0-9;]*m//g' "$work/hub.log" | grep -o 'decoder=[^ ]*' | head -1 | cut -d= -f2 || true)
hz=$(getconf CLK_TCK)
hub_cpu=$(python3 -c "print(round(($h1-$h0)/$hz/$DUR*100,2))")
ff_cpu=$(python3 -c "print(round(($f1-$f0)/$hz/$DUR*100,2))")
ratio=$(python3 -c "print(round(($h1-$h0)/max($f1-$f0,1),3))")
line="| $(date -u +%F) | motion | K=$K sub 640x360@${FPS} (main ${SIZE} ${KBPS} kbit/s), detect ${MFPS} fps, ${DUR} s | hub ${hub_cpu} % of a core | ffmpeg decode+fps+scale+gray ${ff_cpu} % | **${ratio}×** | hub decoded_fps ${fps:-none} (${dec:-decoder ?}); ticks hub $((h1-h0)), ffmpeg $((f1-f0)) |"
echo "$line"
[ -n "$fps" ] || { echo "warning: no homehub_camera_decoded_fps in /metrics; hub log:" >&2; tail -20 "$work/hub.log" >&2; }
bash tests/bench/add-result.sh "$line"
