#!/usr/bin/env bash
# Benchmark (not a test): encryption throughput of the hub's cloud path
# (cloud::seal::encrypt_stream, age v1 = ChaCha20-Poly1305 in 64 KiB chunks) on one file,
# beside Debian's `age -e` on the same file and `openssl speed -evp chacha20-poly1305`
# (the cipher alone, 16 KiB blocks: the ceiling), in one run. Each file tool runs
# REPS times, the best run counts. Appends a row to tests/bench/RESULTS.md.
#   MB=256 REPS=3 bash tests/bench/crypto.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${MB:-256}; REPS=${REPS:-3}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cargo build --release --example seal_file >/dev/null 2>&1 || cargo build --release --example seal_file
SEAL=target/release/examples/seal_file
head -c "$((MB * 1024 * 1024))" /dev/urandom > "$work/in"
recipient=$(target/release/homehub keys new 2>/dev/null | sed -n 's/^# public key: //p' || true)
[ -n "$recipient" ] || { cargo build --release --bins; recipient=$(target/release/homehub keys new 2>/dev/null | sed -n 's/^# public key: //p'); }

best() {  # best wall-clock seconds of REPS runs of "$@"
  local b=1e9 s e
  for _ in $(seq 1 "$REPS"); do
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    b=$(python3 -c "print(round(min($b, $e - $s), 3))")
  done
  echo "$b"
}
hub_s=$(best "$SEAL" "$work/in" "$work/hub.age" "$recipient")
age_s=$(best sh -c "age -e -r $recipient -o $work/cli.age $work/in")
head -c 21 "$work/hub.age" | grep -q "age-encryption.org/v1" || { echo "hub output is not an age file" >&2; exit 1; }
# openssl: bytes per second at 16384-byte blocks, from its machine-readable line.
ossl=$(openssl speed -mr -seconds 3 -bytes 16384 -evp chacha20-poly1305 2>/dev/null | awk -F: '/^\+F:/{print $4}')
read -r hub_mbs age_mbs ossl_mbs r_ossl r_age < <(python3 - "$MB" "$hub_s" "$age_s" "$ossl" <<'PY'
import sys
mb, hub, age, ossl = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
h, a, o = mb / hub, mb / age, ossl / 1048576
print(f"{h:.0f} {a:.0f} {o:.0f} {h/o:.2f} {h/a:.2f}")
PY
)
echo "hub encrypt_stream: ${hub_mbs} MB/s (${hub_s} s)   age CLI: ${age_mbs} MB/s (${age_s} s)   openssl chacha20-poly1305: ${ossl_mbs} MB/s"
echo "ratios: hub/openssl ${r_ossl}× (goal ≥ 0.9)   hub/age ${r_age}× (goal ≥ 1.5)"
bash tests/bench/add-result.sh "| $(date -u +%F) | crypto | ${MB} MB random file, one recipient, best of ${REPS} | hub ${hub_mbs} MB/s | age CLI ${age_mbs} MB/s; openssl speed chacha20-poly1305 (16 KiB) ${ossl_mbs} MB/s | **${r_ossl}× openssl, ${r_age}× age** | age $(age --version 2>/dev/null); the hub's path is the age crate (RustCrypto ChaCha20-Poly1305), one thread |"
