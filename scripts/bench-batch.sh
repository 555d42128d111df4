#!/usr/bin/env bash
# Batch throughput: `recommend --batch` on ROWS generated rows (default 1,000,000) against
# `cut -d, -f1 FILE > /dev/null`, the floor for reading every row, in the same hyperfine run;
# then the peak memory of one batch run. Needs hyperfine and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./target/release/enos-connect}
rows=${ROWS:-1000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 scripts/gen-fleet.py "$rows" > "$dir/fleet.csv"
echo "input: $rows rows, $(du -h "$dir/fleet.csv" | cut -f1)"
hyperfine -N --warmup 1 --runs "${RUNS:-10}" --export-json "$dir/h.json" \
  "cut -d, -f1 $dir/fleet.csv" \
  "$bin recommend --batch $dir/fleet.csv" \
  "$bin recommend --batch $dir/fleet.csv --batch-format csv" >/dev/null 2>&1
python3 - "$dir/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
floor = r[0]["median"]
for x in r:
    print(f"{x['median']:.3f} s median  ratio {x['median'] / floor:.2f}  {x['command'].split('/')[-1] if 'cut' in x['command'] else x['command'].split(' ', 1)[1].replace(sys.argv[1].rsplit('/', 1)[0] + '/', '')}")
PY
python3 - "$bin" "$dir/fleet.csv" <<'PY'
import resource, subprocess, sys
subprocess.run([sys.argv[1], "recommend", "--batch", sys.argv[2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"peak RSS of one batch run: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f} MB")
PY
