#!/usr/bin/env bash
# Puts one result row into the table at the top of tests/bench/RESULTS.md (the file goes
# on with analysis sections after the table). Usage: add-result.sh "| … |"
set -euo pipefail
f="$(dirname "$0")/RESULTS.md"
[ -f "$f" ] || printf '# Benchmark results\n\nEach row: one run, the hub beside its peer on the same input, on this project'"'"'s 2-core x86_64 machine (shared, noisy: compare ratios, not absolutes).\n\n| date | bench | load | homehub | peer | ratio (hub/peer) | notes |\n| --- | --- | --- | --- | --- | --- | --- |\n' > "$f"
python3 - "$f" "$1" <<'PY'
import sys
path, row = sys.argv[1], sys.argv[2]
lines = open(path).read().split("\n")
start = next((i for i, l in enumerate(lines) if l.startswith("| date |")), None)
if start is None:
    lines[-1:] = [row, ""] if lines[-1] == "" else [lines[-1], row]
else:
    end = start
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    lines.insert(end + 1, row)
open(path, "w").write("\n".join(lines))
PY
