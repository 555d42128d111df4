#!/usr/bin/env bash
# Single probes against the C clients doing the same work on the same local peers, timed
# round-robin (scripts/interleave.py), each command's own start-up included; then the load
# rate `serve` holds against the rate mosquitto holds, both driven by the same load probe in
# the same run; and the rate `serve --data FILE` holds against `serve` in memory, the same load
# probe round-robin (interleave.py). Prints medians and ratios; a ratio is enos-connect's
# figure over the peer's. The figures go into docs/performance.json and docs/performance.md
# (scripts/perf_doc.py; NO_WRITE=1 prints only).
# Needs: mosquitto, mosquitto-clients, libcoap3-bin, curl, python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release/enos-connect}
runs=${RUNS:-500}
# A round of the load is 2000 probes, under a tenth of a second: 21 of them, so the median
# is not one moment of the machine's.
rounds=${ROUNDS:-21}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
# Timed from a copy, as installed (see bench-startup.sh); the peers are installed binaries.
cp "$bin" "$dir/enos-connect"
bin="$dir/enos-connect"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mq=$(port); coap=$(port); http=$(port); enos=$(port); data=$(port)
mosquitto -p "$mq" > "$dir/mq.log" 2>&1 & pids+=($!)
coap-server-notls -A 127.0.0.1 -p "$coap" > "$dir/coap.log" 2>&1 & pids+=($!)
python3 scripts/http_peer.py --port "$http" > "$dir/http.log" 2>&1 & pids+=($!)
cat > "$dir/registry.toml" <<'TOML'
[[products]]
key = "pk1"
secret = "bench-product-secret"
measurepoints = ["temp"]

[[devices]]
product = "pk1"
key = "dk1"
secret = "bench-device-secret"
TOML
# The official SDK needs serve's default 50 ms CONNACK delay; mosquitto answers at once, and so
# does serve here, so the two rates compare the servers' own work.
"$bin" serve --registry "$dir/registry.toml" --mqtt "127.0.0.1:$enos" --http off --coap off --console off \
  --connack-delay-ms 0 --quiet > /dev/null 2>&1 & pids+=($!)
# The same serve with its state in a data file: every post's value committed before its reply.
"$bin" serve --registry "$dir/registry.toml" --mqtt "127.0.0.1:$data" --http off --coap off --console off \
  --connack-delay-ms 0 --data "$dir/serve.db" --quiet > /dev/null 2>&1 & pids+=($!)
sleep 1
command="$(for v in RUNS ROUNDS DATA_RUNS; do if [ -n "${!v:-}" ]; then printf '%s=%s ' "$v" "${!v}"; fi; done)scripts/bench-probe.sh"
# One row of docs/performance.md's summary: ID and perf_doc.py's options.
put() { [ "${NO_WRITE:-}" = 1 ] || python3 scripts/perf_doc.py put "$@" --command "$command" > /dev/null; }

one() {  # name, ours, peer
  python3 scripts/interleave.py --runs "$runs" --json --name ours --name peer "$2" "$3" |
    python3 -c '
import json, sys
ours, peer = (x["median_ms"] for x in json.load(sys.stdin))
print(f"{sys.argv[1]:<5} enos-connect {ours:.3f} ms  {sys.argv[2]} {peer:.3f} ms  ratio {ours / peer:.4f}")' "$1" "${3%% *}" |
    tee "$dir/$1.txt"
  read -r _ _ ours _ peer_name peer _ _ ratio < "$dir/$1.txt"
  put "probe_$1" --what "$4" --ours "$ours ms" --peer "\`$peer_name\` $peer ms" --ratio "$ratio" --goal "$5"
}
one mqtt "$bin probe mqtt://127.0.0.1:$mq --publish t --qos 1" "mosquitto_pub -h 127.0.0.1 -p $mq -t t -m x -q 1" \
  "MQTT probe: connect, publish at QoS 1" "≤ 1.0"
one coap "$bin probe coap://127.0.0.1:$coap/time" "coap-client-notls -m get coap://127.0.0.1:$coap/time" \
  "CoAP probe: GET" "≤ 1.5"
one http "$bin probe http://127.0.0.1:$http/" "curl -s -o /dev/null http://127.0.0.1:$http/" \
  "HTTP probe: GET" "≤ 1.0"

# Load: 2000 probes, 50 at a time. Against serve, each logs in as an EnOS device and posts a
# measure point (SUBSCRIBE, PUBLISH at QoS 1, EnOS's reply). mosquitto is not EnOS and sends no
# reply, so against it each probe connects and publishes at QoS 1: the same connection and
# packet work without the reply serve also builds. Rounds alternate between the two servers.
export ENOS_DEVICE_SECRET=bench-device-secret
# One round each to warm up (the first round's allocations and page faults), not counted.
"$bin" probe "mqtt://127.0.0.1:$enos" --product-key pk1 --device-key dk1 -m temp=21.5 \
  --count 2000 --concurrency 50 -f json > /dev/null || true
"$bin" probe "mqtt://127.0.0.1:$mq" --publish t --qos 1 --count 2000 --concurrency 50 -f json > /dev/null || true
for _ in $(seq "$rounds"); do
  "$bin" probe "mqtt://127.0.0.1:$enos" --product-key pk1 --device-key dk1 -m temp=21.5 \
    --count 2000 --concurrency 50 -f json > "$dir/serve.json" || true
  "$bin" probe "mqtt://127.0.0.1:$mq" --publish t --qos 1 --count 2000 --concurrency 50 -f json > "$dir/mq.json" || true
  python3 -c '
import json, sys
s, m = (json.load(open(f)) for f in sys.argv[1:])
print(json.dumps({"serve": s["rate_per_s"], "serve_failed": s["failed"], "mosquitto": m["rate_per_s"], "mosquitto_failed": m["failed"]}))' "$dir/serve.json" "$dir/mq.json"
done | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
serve, mq = statistics.median(r["serve"] for r in rows), statistics.median(r["mosquitto"] for r in rows)
ratio = statistics.median(r["serve"] / r["mosquitto"] for r in rows)
failed = sum(r["serve_failed"] + r["mosquitto_failed"] for r in rows)
print(f"load  serve {serve:.0f}/s (measurepoint posts)  mosquitto {mq:.0f}/s (QoS 1 publishes)  ratio {ratio:.4f}  ({len(rows)} rounds, {failed} failed)")' |
  tee "$dir/load.txt"
read -r _ _ serve _ _ _ mosq _ _ _ _ ratio _ _ failed _ < "$dir/load.txt"
put load --what "load probe, 2000 at concurrency 50: \`serve\` (EnOS login, measure point post, reply) / mosquitto (QoS 1 publish), rounds alternating" \
  --ours "$serve, $failed failed" --peer "mosquitto $mosq" --ratio "$ratio" --goal "≥ 0.9"

# The cost of --data: the same load (2000 probes, 50 at a time, each an EnOS login and a
# measure point post) against serve in memory and serve --data, round-robin; a rate is the
# posts over the median wall time of the probe's run, so the ratio is memory's time over data's.
data_runs=${DATA_RUNS:-21}
python3 scripts/interleave.py --runs "$data_runs" --warmup 3 --json --name memory --name data \
  "$bin probe mqtt://127.0.0.1:$enos --product-key pk1 --device-key dk1 -m temp=21.5 --count 2000 --concurrency 50 -f json" \
  "$bin probe mqtt://127.0.0.1:$data --product-key pk1 --device-key dk1 -m temp=21.5 --count 2000 --concurrency 50 -f json" |
  python3 -c '
import json, sys
memory, data = (x["median_ms"] for x in json.load(sys.stdin))
runs = sys.argv[1]
print(f"data  serve --data {2000 / data * 1000:.0f}/s  serve in memory {2000 / memory * 1000:.0f}/s  ratio {memory / data:.4f}  ({runs} rounds)")' "$data_runs" |
  tee "$dir/data.txt"
read -r _ _ _ data _ _ _ memory _ ratio _ < "$dir/data.txt"
put data_load --what "the same load: \`serve --data FILE\` (each post committed to SQLite before its reply) / \`serve\` in memory, round-robin" \
  --ours "$data" --peer "in memory $memory" --ratio "$ratio" --goal "≥ 0.8"
