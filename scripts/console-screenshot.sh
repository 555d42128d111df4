#!/usr/bin/env bash
# Regenerates docs/console.png: the device page of `serve --console --data FILE`, taken by
# headless Debian Chromium (WebDriver, Python selenium) after the official EnOS Python SDK's
# device reports an hour of values (a minute apart), attributes, tags, an event, its firmware
# and an OTA step, and takes a measure point set from the page; the page is opened afresh, so
# its charts are drawn from the history. The same script as the browser test
# (scripts/console_check.py).
#
# usage: scripts/console-screenshot.sh [OUT.png]
# needs: apt-get install chromium chromium-driver; a Python with selenium,
#   enos-mqtt-sdk-python==0.1.1 and paho-mqtt==1.6.1 in ENOS_CONNECT_CONSOLE_PYTHON (default
#   /tmp/console-venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/console.png}
python=${ENOS_CONNECT_CONSOLE_PYTHON:-/tmp/console-venv/bin/python}
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/enos-connect
dir=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
cat > "$dir/registry.toml" <<'TOML'
[[products]]
key = "meter"
[products.measurepoints.temp]
type = "float"
unit = "°C"
[products.measurepoints.humidity]
type = "float"
unit = "%"
[products.measurepoints.power]
type = "float"
unit = "W"
[products.services.restart]
call = "sync"
inputs.delay = { type = "int" }

[[devices]]
product = "meter"
key = "meter-0042"
secret = "Screenshot-Device-Secret"

[[devices]]
product = "meter"
key = "gw-01"
secret = "Screenshot-Device-Secret"

[[devices]]
product = "meter"
key = "sensor-7"
secret = "Screenshot-Device-Secret"
gateway = "meter/gw-01"

[[firmwares]]
product = "meter"
version = "1.5.0"
url = "https://firmware.example/meter/1.5.0.bin"
md5 = "fedcba9876543210fedcba9876543210"
size = 524288
TOML
"$bin" serve --registry "$dir/registry.toml" --mqtt 127.0.0.1:0 --http off --coap off \
  --console 127.0.0.1:0 --data "$dir/serve.db" --quiet > "$dir/out.jsonl" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/out.jsonl" ] && break; sleep 0.1; done
read -r console mqtt < <(head -1 "$dir/out.jsonl" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["console"], v["mqtt"].rsplit(":",1)[1])')
"$python" scripts/console_check.py "$console" "$mqtt" meter meter-0042 Screenshot-Device-Secret --screenshot "$out"
echo "wrote $out"
