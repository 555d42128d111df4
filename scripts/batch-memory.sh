#!/usr/bin/env bash
# Streams about MB megabytes (default 1000, i.e. 1 GB) of generated fleet rows through
# `recommend --batch -` and fails unless its peak memory stays under 30 MB: batch memory must
# not grow with the input.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./target/debug/enos-connect}
rows=$(( ${MB:-1000} * 1000 * 1000 / 52 ))
python3 - "$bin" "$rows" <<'PY'
import os, subprocess, sys
bin, rows = sys.argv[1], int(sys.argv[2])
gen = subprocess.Popen([sys.executable, "scripts/gen-fleet.py", str(rows)], stdout=subprocess.PIPE)
run = subprocess.Popen([bin, "recommend", "--batch", "-", "--batch-format", "csv"], stdin=gen.stdout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
gen.stdout.close()
err = run.stderr.read()
_, status, usage = os.wait4(run.pid, 0)   # this child's own peak, not the generator's
gen.wait()
peak = usage.ru_maxrss / 1024
print(err.strip().splitlines()[-1] if err.strip() else "(no summary)")
print(f"peak RSS of enos-connect: {peak:.1f} MB for {rows} rows")
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 and peak < 30 else 1)
PY
