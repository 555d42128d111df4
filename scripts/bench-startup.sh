#!/usr/bin/env bash
# Start-up cost of `recommend` on the embedded capabilities, against the binary's own start-up
# (`--version`) measured in the same hyperfine run. Prints medians and the difference.
# Needs hyperfine (Debian package) and a release build: cargo build --release
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-./target/release/enos-connect}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
hyperfine -N --warmup 50 --runs "${RUNS:-1000}" --export-json "$out" \
  "$bin --version" \
  "$bin recommend -a network=tcp -a enos_format=yes -a enos_version=2 -n ota,file_upload -f json" >/dev/null
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base, rec = r[0]["median"] * 1e3, r[1]["median"] * 1e3
print(f"start-up (--version)  median {base:.3f} ms")
print(f"recommend -f json     median {rec:.3f} ms")
print(f"recommend - start-up  {rec - base:+.3f} ms  (ratio {rec / base:.2f})")
PY
