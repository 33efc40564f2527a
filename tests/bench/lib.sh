# Shared by the benchmark scripts (sourced, not run). Expects to be in the repo root.
# Gives: $BIN, $work (a temp dir removed on exit), pids (killed on exit), port, ticks,
# start_camsims MOUNT (K camsims with constant motion; fills $cams with [[camera]]
# entries and urls with their rtsp://…/MOUNT URLs), pct TICKS (percent of one core over DUR).
# PROFILE=debug runs on the debug build (when a release build does not fit; say so with
# the result): ratios hold within one run, absolute numbers do not.
PROFILE=${PROFILE:-release}
BIN=target/$PROFILE
RELEASE_FLAG=$([ "$PROFILE" = release ] && echo --release || true)
# Build when missing or older than the sources.
[ -x $BIN/homehub ] && [ -x $BIN/homehub-camsim ] \
  && [ -z "$(find src web Cargo.toml Cargo.lock -newer $BIN/homehub -print -quit 2>/dev/null)" ] \
  || cargo build $RELEASE_FLAG --bins
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }   # utime+stime of a pid, in clock ticks
pct() { python3 -c "print(round($1/$(getconf CLK_TCK)/$DUR*100,2))"; }
start_camsims() {
  cams=""; urls=()
  for i in $(seq 1 "$K"); do
    local p; p=$(port)
    # Constant motion: a still scene needs only a few kbit/s and gives detection nothing to do.
    $BIN/homehub-camsim --rtsp 127.0.0.1:$p --size "$SIZE" --fps "$FPS" --bitrate "$KBPS" --motion 0-100000 > "$work/camsim$i.log" 2>&1 &
    pids+=($!)
    urls+=("rtsp://127.0.0.1:$p/$1")
    cams+=$'[[camera]]\n'"name = \"Bench $i\""$'\n'"url = \"rtsp://127.0.0.1:$p/$1\""$'\n'
  done
  sleep 2
}
sum_ticks() { local s=0 p; for p in "$@"; do s=$((s + $(ticks "$p"))); done; echo $s; }
# measure HUBPID PEERPID…: settles 8 s, then counts CPU over DUR seconds. Sets hub_ticks,
# peer_ticks, hub_cpu, peer_cpu (percent of one core) and ratio (hub/peer).
measure() {
  local hub=$1; shift
  sleep 8
  local h0 f0
  h0=$(ticks "$hub"); f0=$(sum_ticks "$@")
  sleep "$DUR"
  hub_ticks=$(( $(ticks "$hub") - h0 )); peer_ticks=$(( $(sum_ticks "$@") - f0 ))
  hub_cpu=$(pct $hub_ticks); peer_cpu=$(pct $peer_ticks)
  ratio=$(python3 -c "print(round($hub_ticks/max($peer_ticks,1),3))")
}
# hub_toml: the part of a benchmark hub's config every benchmark shares: data in $work,
# web and MQTT on free loopback ports (sets web, mqtt_tls, mqtt_plain), mDNS off so
# nothing reaches the machine's network. The caller appends its own sections.
hub_toml() {
  web=$(port); mqtt_tls=$(port); mqtt_plain=$(port)
  cat <<TOML
data_dir = "$work/data"
[web]
listen = "127.0.0.1:$web"
[mqtt]
listen_tls = "127.0.0.1:$mqtt_tls"
listen_plain = "127.0.0.1:$mqtt_plain"
[mdns]
enabled = false
TOML
}
