#!/usr/bin/env bash
# Batch throughput: `recommend --batch` on ROWS generated rows (default 1,000,000) against
# `cut -d, -f1 FILE > /dev/null`, the floor for reading every row, in the same run; then the
# peak memory of one batch run. Needs python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./target/release/enos-connect}
rows=${ROWS:-1000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 scripts/gen-fleet.py "$rows" > "$dir/fleet.csv"
python3 scripts/gen-fleet.py "$rows" --random > "$dir/random.csv"
echo "input: $rows rows, $(du -h "$dir/fleet.csv" | cut -f1) (profiles repeat); $(du -h "$dir/random.csv" | cut -f1) (random needs in random order)"
# Round-robin (scripts/interleave.py), so a busy minute on the shared machine falls on cut
# and on enos-connect alike.
python3 scripts/interleave.py --runs "${RUNS:-10}" --warmup 1 --json \
  --name "fleet.csv" --name "recommend --batch fleet.csv" --name "recommend --batch fleet.csv --batch-format csv" \
  "cut -d, -f1 $dir/fleet.csv" \
  "$bin recommend --batch $dir/fleet.csv" \
  "$bin recommend --batch $dir/fleet.csv --batch-format csv" |
  python3 -c '
import json, sys
for x in json.load(sys.stdin):
    seconds, ratio, name = x["median_ms"] / 1000, x["ratio"], x["name"]
    print(f"{seconds:.3f} s median  ratio {ratio:.2f}  {name}")'
# Rows that rarely repeat (random subsets of the needs in random order): every profile of the
# model is decided once, so this measures the decision cache and the engine, not only parsing.
python3 scripts/interleave.py --runs "${RUNS:-10}" --warmup 1 --json \
  --name "random.csv" --name "recommend --batch random.csv" \
  "cut -d, -f1 $dir/random.csv" \
  "$bin recommend --batch $dir/random.csv" |
  python3 -c '
import json, sys
for x in json.load(sys.stdin):
    seconds, ratio, name = x["median_ms"] / 1000, x["ratio"], x["name"]
    print(f"{seconds:.3f} s median  ratio {ratio:.2f}  {name}")'
for f in fleet random; do
python3 - "$bin" "$dir/$f.csv" <<'PY'
import resource, subprocess, sys
subprocess.run([sys.argv[1], "recommend", "--batch", sys.argv[2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"peak RSS of one batch run on {sys.argv[2].rsplit('/', 1)[-1]}: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f} MB")
PY
done
