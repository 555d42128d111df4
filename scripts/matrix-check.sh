#!/usr/bin/env bash
# probe --matrix against a fresh `serve`: the comparison table as measured over MQTT, HTTP and
# CoAP must reproduce capabilities.toml cell for cell (exit 1 on any MISMATCH). Prints the table.
# Usage: scripts/matrix-check.sh [path/to/enos-connect]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-./target/debug/enos-connect}
dir=$(mktemp -d)
"$bin" serve --registry examples/registry.toml --mqtt 127.0.0.1:0 --http 127.0.0.1:0 \
  --coap 127.0.0.1:0 --console off >"$dir/events" 2>"$dir/err" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do
  [ -s "$dir/events" ] && break
  sleep 0.05
done
listening=$(head -n 1 "$dir/events")
addr() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$listening" "$1"; }
ENOS_DEVICE_SECRET=Example-Device-Secret "$bin" probe --matrix \
  "mqtt://$(addr mqtt)" "http://$(addr http)" "coap://$(addr coap)" \
  --product-key Pk7Xy2 --device-key meter-0042 --measurepoint temp=21.5 --file-point temp
