#!/usr/bin/env bash
# Probe cost against the C clients doing the same work, on the same local peers, in one
# hyperfine run each; then the load rate (connect + disconnect per probe) against mosquitto.
# Needs: hyperfine, mosquitto, mosquitto-clients, libcoap3-bin, curl, python3, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release/enos-connect}
runs=${RUNS:-200}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mq=$(port); coap=$(port); http=$(port)
mosquitto -p "$mq" > "$dir/mq.log" 2>&1 & pids+=($!)
coap-server-notls -A 127.0.0.1 -p "$coap" > "$dir/coap.log" 2>&1 & pids+=($!)
python3 scripts/http_peer.py --port "$http" > "$dir/http.log" 2>&1 & pids+=($!)
sleep 1

ratio() {  # name, then the two commands: ours first, the peer second
  local name=$1; shift
  hyperfine -N --warmup 20 --runs "$runs" --export-json "$dir/h.json" "$@" >/dev/null 2>&1
  python3 - "$dir/h.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ours, peer = r[0]["median"] * 1e3, r[1]["median"] * 1e3
print(f"{sys.argv[2]:<6} enos-connect {ours:.3f} ms  peer {peer:.3f} ms  ratio {ours / peer:.2f}   ({r[1]['command'].split()[0]})")
PY
}
ratio mqtt "$bin probe mqtt://127.0.0.1:$mq --publish t --qos 1" "mosquitto_pub -h 127.0.0.1 -p $mq -t t -m x -q 1"
ratio coap "$bin probe coap://127.0.0.1:$coap/time" "coap-client-notls -m get coap://127.0.0.1:$coap/time"
ratio http "$bin probe http://127.0.0.1:$http/" "curl -s -o /dev/null http://127.0.0.1:$http/"

echo "load: --count 2000 --concurrency 50 against mosquitto, ${ROUNDS:-5} rounds"
for _ in $(seq "${ROUNDS:-5}"); do
  "$bin" probe "mqtt://127.0.0.1:$mq" --count 2000 --concurrency 50 -f json
done | python3 -c '
import json, sys, statistics
text = sys.stdin.read()
rates, dec, i = [], json.JSONDecoder(), 0
while i < len(text):
    if text[i].isspace():
        i += 1; continue
    obj, i = dec.raw_decode(text, i)
    assert obj["failed"] == 0, obj["errors"]
    rates.append(obj["rate_per_s"])
print(f"load   median {statistics.median(rates):.0f} connections/s (rounds: {sorted(rates)})")'
