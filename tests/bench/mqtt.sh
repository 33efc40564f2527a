#!/usr/bin/env bash
# Benchmark (not a test): the hub's MQTT broker (authorising front end + rumqttd) beside
# mosquitto (Debian package) under the same load, in one run. examples/mqtt_load.rs
# simulates N devices, each on its own connection, publishing a ~200-byte JSON state at
# RATE msg/s (QoS 1, retained, as a paired device does), then BURST messages each as fast
# as the broker acknowledges them; one subscriber on homehub/dev/+/state times every
# delivery. mosquitto runs anonymous; the hub runs with a device login per simulated
# device, so its figures include authentication and the per-packet ACL checks.
# Prints a table and appends one row per phase to tests/bench/RESULTS.md.
#   N=200 STEADY=20 RATE=1 BURST=100 bash tests/bench/mqtt.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200}; STEADY=${STEADY:-20}; RATE=${RATE:-1}; BURST=${BURST:-100}
. tests/bench/lib.sh
cargo build --release --example mqtt_load
LOAD=target/release/examples/mqtt_load

wait_tcp() {  # PORT WHAT PID: until something accepts on 127.0.0.1:PORT
  for _ in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || { echo "$2 exited at start-up" >&2; return 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$2 not listening on 127.0.0.1:$1 after 20 s" >&2; return 1
}

# --- mosquitto: the Debian package's broker, anonymous, nothing on disk.
mport=$(port)
cat > "$work/mosquitto.conf" <<CONF
listener $mport 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
# Run as whoever runs the benchmark (as root it would switch to "mosquitto" and lose $work).
user $(id -un)
# The default (1000 queued per client) silently drops most of a burst on its way to the
# one subscriber; raised so that what mosquitto acknowledges, it delivers.
max_queued_messages 1000000
CONF
mosquitto -c "$work/mosquitto.conf" 2>> "$work/mosquitto.log" &
mosq=$!; pids+=($mosq)
wait_tcp "$mport" mosquitto "$mosq"

# --- the hub: no cameras, no mDNS, everything on loopback.
hub_toml > "$work/hub.toml"
plain=$mqtt_plain
# rumqttd's warnings say when it drops messages; make sure they are in the log.
NO_COLOR=1 HOMEHUB_LOG=${HOMEHUB_LOG:-info,rumqttd=warn} \
  $BIN/homehub serve --config "$work/hub.toml" 2> "$work/hub.log" &
hub=$!; pids+=($hub)
for _ in $(seq 1 100); do
  curl -ksf "https://127.0.0.1:$web/healthz" > /dev/null && break
  kill -0 "$hub" 2>/dev/null || { echo "homehub serve exited:" >&2; tail -20 "$work/hub.log" >&2; exit 1; }
  sleep 0.2
done
curl -ksf "https://127.0.0.1:$web/healthz" > /dev/null || { echo "hub: no /healthz after 20 s" >&2; tail -20 "$work/hub.log" >&2; exit 1; }
wait_tcp "$plain" "hub MQTT (plain)" "$hub"

# One login per simulated device, one broker user for the subscriber.
login() {  # prints "username password" from the CLI's `username: …` / `password: …` lines
  awk '/^username:/ {u=$2} /^password:/ {p=$2} END {if (u == "" || p == "") exit 1; print u, p}'
}
: > "$work/creds"
for i in $(seq 1 "$N"); do
  out=$($BIN/homehub device add "bench-$i" --config "$work/hub.toml" 2> "$work/cli.err") \
    || { echo "homehub device add bench-$i failed:" >&2; cat "$work/cli.err" >&2; exit 1; }
  echo "$out" | login >> "$work/creds" || { echo "device add bench-$i printed no username/password: $out" >&2; exit 1; }
done
out=$($BIN/homehub mqtt-user add bench-watch --config "$work/hub.toml" 2> "$work/cli.err") \
  || { echo "homehub mqtt-user add bench-watch failed:" >&2; cat "$work/cli.err" >&2; exit 1; }
read -r wuser wpass < <(echo "$out" | login) \
  || { echo "mqtt-user add printed no username/password: $out" >&2; exit 1; }

# Connections the kernel dropped because a listen queue was full (the client retries its
# SYN after 1 s): 200 devices connecting at once can overflow a small accept backlog.
overflows() { awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 1; i <= NF; i++) if (k[i] == "ListenOverflows") print $i }' /proc/net/netstat; }

# run NAME PID ARGS…: the load against one broker; each phase's JSON line gets the broker's
# CPU ticks since the previous line (so per phase) as "ticks", and listen-queue overflows.
run() {
  local name=$1 pid=$2; shift 2
  local t0 t1 o0 o1 line rc=0
  t0=$(ticks "$pid"); o0=$(overflows)
  : > "$work/$name.jsonl"
  while IFS= read -r line; do
    t1=$(ticks "$pid" 2>/dev/null) || { echo "$name (pid $pid) is gone" >&2; t1=$t0; }
    o1=$(overflows)
    echo "${line%\}},\"ticks\":$((t1 - t0)),\"listen_overflows\":$((o1 - o0))}" >> "$work/$name.jsonl"
    t0=$t1; o0=$o1
  done < <(rc=0; $LOAD --port "$@" --steady-secs "$STEADY" --rate "$RATE" --burst "$BURST" --retain \
             --label "$name" 2> "$work/$name.err" || rc=$?; echo "rc=$rc" > "$work/$name.rc")
  rc=$(sed 's/rc=//' "$work/$name.rc")
  if [ "$rc" != 0 ] || [ "$(wc -l < "$work/$name.jsonl")" -lt 3 ]; then
    echo "load against $name failed (exit $rc):" >&2
    cat "$work/$name.err" "$work/$name.jsonl" >&2
    [ "$name" = hub ] && { echo "--- hub log (last 30 lines)" >&2; tail -30 "$work/hub.log" >&2; }
    exit 1
  fi
  cat "$work/$name.err" >&2
}
run mosquitto "$mosq" "$mport" --devices "$N"
run hub "$hub" "$plain" --creds "$work/creds" --watch-user "$wuser" --watch-pass "$wpass"

# Anything the hub logged at WARN or ERROR during the run goes into the output.
# Grouped by level, target and message (spans, timestamps, key=value fields, numbers cut off).
python3 - "$work/hub.log" > "$work/problems" <<'PY'
import collections, re, sys
seen = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"\S+\s+(WARN|ERROR) .*?([a-z_]+(?:::[a-z_]+)*): (.*)$", line)
    if m:
        msg = re.sub(r"\d+", "N", re.split(r" \w+=", m.group(3))[0])
        seen[f"{m.group(1)} {m.group(2)}: {msg[:80]}"] += 1
for k, c in seen.most_common():
    print(c, k)
PY
problems=$(awk '{s += $1} END {print s + 0}' "$work/problems")
if [ "$problems" -gt 0 ]; then
  echo "hub logged $problems WARN/ERROR lines:" >&2
  cat "$work/problems" >&2
  echo "first of them:" >&2
  # awk reads to the end (head would SIGPIPE the pipeline and, with pipefail, the script).
  sed 's/\x1b\[[0-9;]*m//g' "$work/hub.log" | awk '/^[^ ]+ +(WARN|ERROR) / && n++ < 5' | cut -c1-400 >&2
fi

python3 - "$work" "$N" "$STEADY" "$RATE" "$BURST" "$(getconf CLK_TCK)" \
  "$(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')" > "$work/rows" <<'PY'
import json, sys, datetime
work, n, steady, rate, burst, hz, mver = sys.argv[1:]
hz = int(hz)
def load(name):
    return {j["phase"]: j for j in map(json.loads, open(f"{work}/{name}.jsonl"))}
m, h = load("mosquitto"), load("hub")
problems = [l.split(None, 1) for l in open(f"{work}/problems") if l.strip()]
def cpu(p):  # percent of one core over the phase (the phase's own seconds)
    return round(p["ticks"] / hz / max(p["secs"], 0.001) * 100, 1)
def cpu_s(p):  # CPU seconds from the end of the previous phase to the end of this one
    return round(p["ticks"] / hz, 2)
def r(a, b):
    return f"{a / b:.2f}" if b else "n/a"
cols = ("sent", "received", "lost", "acked_per_s", "msgs_per_s", "p50_ms", "p99_ms", "max_ms")
print(f"{'broker':10} {'phase':8} " + " ".join(f"{c:>11}" for c in cols) + f" {'cpu s':>6} {'overflows':>9}", file=sys.stderr)
for name, d in (("mosquitto", m), ("hub", h)):
    for ph in ("connect", "steady", "burst"):
        p = d[ph]
        print(f"{name:10} {ph:8} " + " ".join(f"{p.get(c, '-'):>11}" for c in cols)
              + f" {cpu_s(p):>6} {p['listen_overflows']:>9}", file=sys.stderr)
today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
conn = lambda p: f"p50 {p['p50_ms']} / p99 {p['p99_ms']} ms, {p['listen_overflows']} listen-queue overflows"
for ph, what in (("steady", f"{n} devices × {rate} msg/s for {steady} s"), ("burst", f"{n} devices × {burst} msgs at once")):
    a, b = h[ph], m[ph]
    # Steady: CPU as a share of a core over the 20 s. Burst: CPU seconds for the whole burst
    # (the drain wait after it included; an idle broker costs next to nothing).
    use = (lambda p: f"CPU {cpu(p)} % of a core") if ph == "steady" else (lambda p: f"{cpu_s(p)} CPU s")
    fig = lambda p: f"{p['msgs_per_s']} msg/s delivered, p99 {p['p99_ms']} ms, {use(p)}"
    ratio = f"**msgs/s {r(a['msgs_per_s'], b['msgs_per_s'])}×, p99 {r(a['p99_ms'], b['p99_ms'])}×**, CPU {r(a['ticks'], b['ticks'])}×"
    notes = [f"lost hub {a['lost']} of {a['sent']}, mosquitto {b['lost']} of {b['sent']}"]
    if a["lost"] or b["lost"]:
        notes[0] += " (msgs/s and latencies cover delivered messages only)"
    notes.append(f"p50 hub {a['p50_ms']} ms, mosquitto {b['p50_ms']} ms")
    notes.append(f"PUBACKed hub {a['acked_per_s']}/s, mosquitto {b['acked_per_s']}/s")
    if ph == "steady":
        notes.append(f"connect of {n}: hub {conn(h['connect'])}; mosquitto {conn(m['connect'])}")
    elif problems:
        notes.append("hub log (whole run): " + ", ".join(f"{c}× {t.strip()}" for c, t in problems[:3]))
    notes = [x.replace("|", "/") for x in notes]
    print(f"| {today} | mqtt {ph} | {what}; QoS 1 retained ~200 B, one subscriber on homehub/dev/+/state; plain TCP on loopback | hub {fig(a)} | mosquitto {mver} {fig(b)} | {ratio} | {'; '.join(notes)} |")
PY
while IFS= read -r row; do
  echo "$row"
  bash tests/bench/add-result.sh "$row"
done < "$work/rows"
