#!/usr/bin/env bash
# Batch throughput: `recommend --batch` on ROWS generated rows (default 1,000,000) against
# `cut -d, -f1 FILE > /dev/null`, the floor for reading every row, in the same run; then the
# peak memory of one batch run. Two fleets: one whose profiles repeat (a survey of device
# models), one that looks like a user's own fleet and rarely repeats (`gen-fleet.py --random`:
# random needs in random order, a third of the answers with defaults left empty).
#
# BASE=path/to/another/enos-connect times that build too, in the same rounds (the build
# before a change, for its before and after). The figures go into docs/performance.json, and
# from it into docs/performance.md: the table between `batch:begin` and `batch:end` and the
# summary's rows (scripts/perf_doc.py; NO_WRITE=1 leaves both alone). Needs python3 and a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./target/release/enos-connect}
rows=${ROWS:-1000000}
runs=${RUNS:-10}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 scripts/gen-fleet.py "$rows" > "$dir/fleet.csv"
python3 scripts/gen-fleet.py "$rows" --random > "$dir/random.csv"
# Copies, as `cargo install` would leave them (see docs/performance.md on start-up).
cp "$bin" "$dir/enos-connect"
if [ -n "${BASE:-}" ]; then cp "$BASE" "$dir/base-enos-connect"; fi
echo "input: $rows rows, $(du -h "$dir/fleet.csv" | cut -f1) (profiles repeat); $(du -h "$dir/random.csv" | cut -f1) (a user's fleet: random needs in random order, some answers left to their defaults)"
report() {
  python3 -c '
import json, sys
for x in json.load(sys.stdin):
    seconds, ratio, name = x["median_ms"] / 1000, x["ratio"], x["name"]
    print(f"{seconds:.3f} s median  ratio {ratio:.2f}  {name}")'
}
# Round-robin (scripts/interleave.py), so a busy minute on the shared machine falls on cut
# and on enos-connect alike.
names=(--name "fleet.csv" --name "recommend --batch fleet.csv" --name "recommend --batch fleet.csv --batch-format csv")
cmds=("cut -d, -f1 $dir/fleet.csv" "$dir/enos-connect recommend --batch $dir/fleet.csv" "$dir/enos-connect recommend --batch $dir/fleet.csv --batch-format csv")
if [ -n "${BASE:-}" ]; then
  names+=(--name "the build before: recommend --batch fleet.csv")
  cmds+=("$dir/base-enos-connect recommend --batch $dir/fleet.csv")
fi
python3 scripts/interleave.py --runs "$runs" --warmup 1 --json "${names[@]}" "${cmds[@]}" | report | tee "$dir/fleet.txt"
# Rows that rarely repeat: this measures what a row's answers and needs cost, not only parsing.
names=(--name "random.csv" --name "recommend --batch random.csv")
cmds=("cut -d, -f1 $dir/random.csv" "$dir/enos-connect recommend --batch $dir/random.csv")
if [ -n "${BASE:-}" ]; then
  names+=(--name "the build before: recommend --batch random.csv")
  cmds+=("$dir/base-enos-connect recommend --batch $dir/random.csv")
fi
python3 scripts/interleave.py --runs "$runs" --warmup 1 --json "${names[@]}" "${cmds[@]}" | report | tee "$dir/random.txt"
for f in fleet random; do
python3 - "$dir/enos-connect" "$dir/$f.csv" <<'PY' | tee -a "$dir/rss.txt"
import resource, subprocess, sys
subprocess.run([sys.argv[1], "recommend", "--batch", sys.argv[2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"peak RSS of one batch run on {sys.argv[2].rsplit('/', 1)[-1]}: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f} MB")
PY
done
[ "${NO_WRITE:-}" = 1 ] && exit 0
python3 - "$dir" "$rows" "$runs" <<'PY'
import os, re, subprocess, sys
d, rows, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = {n: open(os.path.join(d, n + ".txt")).read() for n in ("fleet", "random", "rss")}
def figure(name, which):
    m = re.search(rf"^([\d.]+) s median\s+ratio ([\d.]+)\s+{re.escape(name)}$", text[which], re.M)
    return (float(m.group(1)), float(m.group(2))) if m else None
cut_r, ours_r = figure("random.csv", "random"), figure("recommend --batch random.csv", "random")
base_r = figure("the build before: recommend --batch random.csv", "random")
cut_f, jsonl_f = figure("fleet.csv", "fleet"), figure("recommend --batch fleet.csv", "fleet")
csv_f = figure("recommend --batch fleet.csv --batch-format csv", "fleet")
base_f = figure("the build before: recommend --batch fleet.csv", "fleet")
lines = [
    "| fleet | `cut -d, -f1` | `recommend --batch` (JSON Lines) | ratio | goal | met |",
    "|---|---|---|---|---|---|",
    f"| a user's fleet, rows rarely repeat (`gen-fleet.py --random`) | {cut_r[0]:.3f} s | {ours_r[0]:.3f} s | {ours_r[1]:.2f} | ≤ 2.0 | {'yes' if ours_r[1] <= 2.0 else '**no**'} |",
    f"| a survey, profiles repeat (`gen-fleet.py`) | {cut_f[0]:.3f} s | {jsonl_f[0]:.3f} s (CSV out {csv_f[0]:.3f} s, {csv_f[1]:.2f}) | {jsonl_f[1]:.2f} | ≤ 4 | {'yes' if jsonl_f[1] <= 4 else '**no**'} |",
]
if base_r:
    lines.append(f"| the build before, same rounds: the user's fleet | {cut_r[0]:.3f} s | {base_r[0]:.3f} s | {base_r[1]:.2f} | | |")
if base_f:
    lines.append(f"| the build before, same rounds: the survey | {cut_f[0]:.3f} s | {base_f[0]:.3f} s | {base_f[1]:.2f} | | |")
for m in re.finditer(r"^peak RSS of one batch run on (\w+)\.csv: ([\d.]+) MB", text["rss"], re.M):
    lines.append(f"| peak RSS, {m.group(1)}.csv | | {m.group(2)} MB | | < 30 MB | {'yes' if float(m.group(2)) < 30 else '**no**'} |")
env = "".join(f"{k}={os.environ[k]} " for k in ("ROWS", "RUNS", "BASE") if k in os.environ)
command = env + "scripts/bench-batch.sh"
print("\n".join(lines))
doc = [sys.executable, "scripts/perf_doc.py"]
subprocess.run(doc + ["table", "batch", "--command", f"{command} ({rows:,} rows, {runs} rounds round-robin, medians)"],
               input="\n".join(lines), text=True, check=True)
subprocess.run(doc + ["put", "batch_random", "--what", f"`recommend --batch`, {rows:,} rows of a user's fleet (`gen-fleet.py --random`), JSON Lines out / `cut -d, -f1`",
                      "--ours", f"{ours_r[0]:.3f} s", "--peer", f"`cut` {cut_r[0]:.3f} s", "--ratio", f"{ours_r[1]:.4f}", "--goal", "≤ 2.0",
                      "--command", command], check=True)
subprocess.run(doc + ["put", "batch_survey", "--what", f"`recommend --batch`, {rows:,} rows whose profiles repeat (`gen-fleet.py`) / `cut -d, -f1`",
                      "--ours", f"{jsonl_f[0]:.3f} s", "--peer", f"`cut` {cut_f[0]:.3f} s", "--ratio", f"{jsonl_f[1]:.4f}", "--goal", "≤ 4",
                      "--command", command], check=True)
rss = max(float(m.group(1)) for m in re.finditer(r"^peak RSS of one batch run on \w+\.csv: ([\d.]+) MB", text["rss"], re.M))
subprocess.run(doc + ["put", "batch_rss", "--what", "`recommend --batch`: peak RSS (the larger of the two fleets)",
                      "--ours", f"{rss:.1f} MB", "--value", f"{rss}", "--goal", "< 30 MB", "--command", command], check=True)
PY
