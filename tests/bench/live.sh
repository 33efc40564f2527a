#!/usr/bin/env bash
# Benchmark (not a test): the live view, on a hub with one 1080p30 camsim at a 2 s GOP.
#  (a) time from opening the WebSocket to the first fragment (a keyframe: decodable) over
#      OPENS opens, p50/p95, as a ratio of the GOP (goal ≤ 0.15×);
#  (b) what the hub adds between a unit reaching the appsink (Feed::push) and its
#      WebSocket write finishing, p50/p99 from the hub's trace (target homehub::live::delay),
#      as a ratio of the frame interval (goal ≤ 1×), with VIEWERS viewers;
#  (c) the hub's CPU with VIEWERS viewers vs none, DUR s each (utime+stime from /proc),
#      on a second hub without the trace (goal ≤ 1.2×).
# Prints one result row and appends it to tests/bench/RESULTS.md.
#   OPENS=20 VIEWERS=4 DUR=20 bash tests/bench/live.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
K=1; SIZE=${SIZE:-1920x1080}; FPS=${FPS:-30}; KBPS=${KBPS:-4000}; GOP=$((2 * FPS))
OPENS=${OPENS:-20}; VIEWERS=${VIEWERS:-4}; DUR=${DUR:-20}
. tests/bench/lib.sh
cargo build $RELEASE_FLAG --example live_probe
PROBE=$BIN/examples/live_probe
p=$(port)
$BIN/homehub-camsim --rtsp 127.0.0.1:$p --size "$SIZE" --fps "$FPS" --bitrate "$KBPS" --gop "$GOP" --motion 0-100000 > "$work/camsim.log" 2>&1 &
pids+=($!)
sleep 2

# start_hub NAME LOGFILTER: a hub recording the camera; sets hub (pid), web, fp, cookie.
start_hub() {
  hub_toml > "$work/$1.toml"
  sed -i "s#$work/data#$work/$1#" "$work/$1.toml"
  cat >> "$work/$1.toml" <<TOML
[recording]
mode = "continuous"
[[camera]]
name = "Bench"
url = "rtsp://127.0.0.1:$p/main"
TOML
  mkdir -p "$work/$1"
  printf 'a long bench password\n' | $BIN/homehub user add bench@example.com --role viewer --config "$work/$1.toml" >/dev/null
  HOMEHUB_LOG="$2" $BIN/homehub serve --config "$work/$1.toml" > "$work/$1.ready" 2> "$work/$1.log" &
  hub=$!; pids+=($hub)
  for _ in $(seq 100); do grep -q '"ready"' "$work/$1.ready" 2>/dev/null && break; sleep 0.2; done
  fp=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["fingerprint"])' "$work/$1.ready")
  cookie=$(curl -ks -D - -o /dev/null -H 'content-type: application/json' \
    --data '{"email":"bench@example.com","password":"a long bench password"}' "https://127.0.0.1:$web/api/session" \
    | awk -F'[: ;]+' 'tolower($1)=="set-cookie"{print $2; exit}')
  for _ in $(seq 100); do
    curl -ks -H "cookie: $cookie" "https://127.0.0.1:$web/api/cameras" | grep -q '"streaming"' && break; sleep 0.2
  done
  sleep 3 # the first keyframe is cached
}
path=/api/cameras/1/live

start_hub trace "info,homehub::live::delay=trace"
first=$($PROBE first "$web" "$fp" "$cookie" "$path" "$OPENS")
$PROBE hold "$web" "$fp" "$cookie" "$path" "$VIEWERS" 10 > "$work/hold.out"
read -r p50_delay p99_delay n_delay < <(python3 - "$work/trace.log" <<'PY'
import re, sys
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())  # the log may be coloured
v = sorted(int(m.group(1)) for m in re.finditer(r"delay_us=(\d+)", text))
q = lambda p: v[round((len(v) - 1) * p)] / 1000
print(q(0.5), q(0.99), len(v))
PY
)
kill "$hub"; wait "$hub" 2>/dev/null || true

start_hub quiet "info"
sleep 5
t0=$(ticks "$hub"); sleep "$DUR"; idle=$(( $(ticks "$hub") - t0 ))
$PROBE hold "$web" "$fp" "$cookie" "$path" "$VIEWERS" $((DUR + 6)) > "$work/hold2.out" &
probe=$!
sleep 4
t0=$(ticks "$hub"); sleep "$DUR"; busy=$(( $(ticks "$hub") - t0 ))
wait "$probe"

read -r p50_first p95_first < <(echo "$first" | sed -E 's/p50_ms=([0-9.]+) p95_ms=([0-9.]+).*/\1 \2/')
gop_ms=$((GOP * 1000 / FPS)); frame_ms=$(python3 -c "print(round(1000/$FPS,3))")
r() { python3 -c "print(round($1,3))"; }
line="| $(date -u +%F) | live | 1 camsim ${SIZE}@${FPS} ${KBPS} kbit/s, GOP ${gop_ms} ms; ${OPENS} opens; ${VIEWERS} viewers, ${DUR} s | first fragment p50 ${p50_first} / p95 ${p95_first} ms; hub delay p50 ${p50_delay} / p99 ${p99_delay} ms ($n_delay units); CPU ${VIEWERS} viewers $(pct $busy) % of a core | GOP ${gop_ms} ms; frame ${frame_ms} ms; CPU no viewers $(pct $idle) % | **first $(r "$p95_first/$gop_ms")× GOP (p95), delay $(r "$p99_delay/$frame_ms")× frame (p99), CPU $(r "$busy/max($idle,1)")×** | $(uname -m), $(nproc) cores, $PROFILE build; p50 first $(r "$p50_first/$gop_ms")× GOP, p50 delay $(r "$p50_delay/$frame_ms")× frame; ticks $busy vs $idle; $(cat "$work/hold2.out") |"
echo "$line"
bash tests/bench/add-result.sh "$line"
