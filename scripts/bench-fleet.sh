#!/usr/bin/env bash
# A fleet on one machine, in one run: `probe --fleet` holds N devices against `serve` and then
# against mosquitto (same N, interval, hold and ramp), then a plain Python asyncio client
# (scripts/fleet_asyncio.py) does the same against serve. Prints, for each server: RSS per held
# connection (peak RSS during the hold less the RSS before, over the devices connected), CPU
# per message (the server's user+system time over the run, over the messages acknowledged),
# delivered/offered and the p99 of the answer; and the CPU per message of probe --fleet against
# the Python client's. Each server starts fresh (the devices activate dynamically once).
# Needs: mosquitto, python3 and a release build. Env: N, EVERY, HOLD, RATE, BIN, SERVE_BIN,
# PY_RATE (the Python client's ramp), SKIP_PY=1 (no Python run).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release/enos-connect}
# The serve measured (another build of it, to compare before and after a change).
serve_bin=${SERVE_BIN:-$bin}
n=${N:-15000}
every=${EVERY:-2s}
hold=${HOLD:-20s}
rate=${RATE:-3000}
# The Python client's ramp: at 3,000 logins a second its one event loop falls behind and its
# logins time out (about 9,000 of 15,000 got in), so it ramps at a rate it keeps up with and
# holds every device, and the CPU per message compares the same work.
py_rate=${PY_RATE:-1000}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
# Every process here holds N sockets: the soft open-file limit up to the hard one.
ulimit -n "$(ulimit -Hn)"
secs() { python3 -c 'import sys; t=sys.argv[1]; u={"ms":.001,"s":1,"m":60,"h":3600}; import re; m=re.fullmatch(r"([0-9.]+)(ms|s|m|h)?",t); print(float(m[1])*u[m[2] or "s"])' "$1"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Run a command; its user+system seconds go to the file named first.
timed() { local out=$1; shift; python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:]).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{u.ru_utime + u.ru_stime}\n")
sys.exit(r)' "$out" "$@"; }
python3 - "$n" > "$dir/registry.toml" <<'PY'
import sys
print('[[products]]\nkey = "PkFleet"\nsecret = "Fleet-Product-Secret"\nmeasurepoints = ["temp"]')
for i in range(1, int(sys.argv[1]) + 1):
    print(f'[[devices]]\nproduct = "PkFleet"\nkey = "fleet-{i}"')
PY
export ENOS_PRODUCT_SECRET=Fleet-Product-Secret
hz=$(getconf CLK_TCK)

# One server under one fleet: prints "name rss_per_conn_kb cpu_us_per_msg delivered p99_ms probe_cpu_us_per_msg connected".
run_fleet() {
  local name=$1 pid=$2 port=$3
  sleep 1
  local base; base=$(rss_kb "$pid"); local c0; c0=$(cpu_ticks "$pid")
  ( peak=0; while kill -0 "$pid" 2>/dev/null; do r=$(rss_kb "$pid" || echo 0); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$dir/$name.peak"; sleep 0.5; done ) &
  local sampler=$!
  timed "$dir/$name.probe-cpu" "$bin" probe "mqtt://127.0.0.1:$port" --fleet --devices "$n" --product-key PkFleet \
    -m temp=21.5 --every "$every" --hold "$hold" --rate "$rate" --timeout 20 -f json > "$dir/$name.json" || true
  local c1; c1=$(cpu_ticks "$pid")
  kill "$sampler" 2>/dev/null || true
  python3 - "$name" "$dir/$name.json" "$base" "$(cat "$dir/$name.peak")" "$((c1 - c0))" "$hz" "$(cat "$dir/$name.probe-cpu")" <<'PY'
import json, sys
name, path, base, peak, ticks, hz, probe_cpu = sys.argv[1:]
r = json.load(open(path)); f = r["fleet"]
conn = max(f["peak_connected"], 1); acked = max(f["acked"], 1)
stage = r["stages"].get("reply") or r["stages"].get("puback") or {}
print(f'{name:10} {(int(peak) - int(base)) / conn:8.2f} {int(ticks) / int(hz) / acked * 1e6:8.1f} '
      f'{f["delivered"]:9.4f} {stage.get("p99_ms", float("nan")):8.2f} {float(probe_cpu) / acked * 1e6:8.1f} '
      f'{f["peak_connected"]:>9}/{f["devices"]} {f["offered_per_s"]:>9} {f["acked_per_s"]:>9}')
PY
}

echo "N=$n every=$every hold=$hold rate=$rate; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %8s %8s %9s %8s %8s %12s %9s %9s\n' server "KB/conn" "us/msg" delivered "p99 ms" "probe us" connected "offered/s" "acked/s"
p=$(port)
"$serve_bin" serve --registry "$dir/registry.toml" --mqtt "127.0.0.1:$p" --http off --coap off --console off \
  --connack-delay-ms 0 --quiet > /dev/null 2>&1 & spid=$!; pids+=($spid)
run_fleet serve "$spid" "$p"
kill "$spid"
p=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nmax_inflight_messages 0\nset_tcp_nodelay true\n' "$p" > "$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" > "$dir/mq.log" 2>&1 & mpid=$!; pids+=($mpid)
run_fleet mosquitto "$mpid" "$p"
kill "$mpid"

# The yardstick: a plain Python asyncio client, the same fleet against a fresh serve.
if [ -n "${SKIP_PY:-}" ]; then exit 0; fi
p=$(port)
"$serve_bin" serve --registry "$dir/registry.toml" --mqtt "127.0.0.1:$p" --http off --coap off --console off \
  --connack-delay-ms 0 --quiet > /dev/null 2>&1 & spid=$!; pids+=($spid)
sleep 1
timed "$dir/py.cpu" python3 scripts/fleet_asyncio.py 127.0.0.1 "$p" PkFleet "$n" "$(secs "$every")" "$(secs "$hold")" "$py_rate" > "$dir/py.json"
kill "$spid"
python3 - "$dir/py.json" "$dir/py.cpu" "$dir/serve.json" "$dir/serve.probe-cpu" <<'PY'
import json, sys
py = json.load(open(sys.argv[1])); py_cpu = float(open(sys.argv[2]).read())
r = json.load(open(sys.argv[3])); probe_cpu = float(open(sys.argv[4]).read())
py_us = py_cpu / max(py["acked"], 1) * 1e6
probe_us = probe_cpu / max(r["fleet"]["acked"], 1) * 1e6
print(f'client CPU per message against serve: probe --fleet {probe_us:.1f} us, Python asyncio {py_us:.1f} us '
      f'({probe_us / py_us:.2f}x; Python: {py["connected"]} connected, {py["acked"]} acked of {py["offered"]})')
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
