#!/usr/bin/env bash
# How large serve's data file grows per million measure point values: `serve --data` with a
# retention that keeps every value, VALUES values posted with a time each (scripts/store_post.py:
# POINTS points a time, one second apart, as a device reporting every second would), serve
# stopped with SIGTERM (SQLite folds its write-ahead log into the file), then the file's bytes
# over the values. Writes the figure into docs/serve.md between the store-size markers.
# Needs python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release/enos-connect}
values=${VALUES:-1000000}
points=${POINTS:-10}
dir=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/registry.toml" <<'TOML'
[[products]]
key = "pk1"

[[devices]]
product = "pk1"
key = "dk1"
secret = "size-device-secret"
TOML
"$bin" serve --registry "$dir/registry.toml" --mqtt "127.0.0.1:$port" --http off --coap off --console off \
  --connack-delay-ms 0 --data "$dir/serve.db" --retain "7d,$values" --quiet > /dev/null 2> "$dir/serve.err" & pid=$!
sleep 1
posted=$(ENOS_DEVICE_SECRET=size-device-secret python3 scripts/store_post.py 127.0.0.1 "$port" pk1 dk1 "$values" "$points")
kill -TERM "$pid"
wait "$pid"
pid=""
if [ -e "$dir/serve.db-wal" ] && [ -s "$dir/serve.db-wal" ]; then
  echo "store-size.sh: the write-ahead log was not folded into the file at exit" >&2
  exit 1
fi
bytes=$(stat -c %s "$dir/serve.db")
python3 - "$posted" "$bytes" "$values" "$points" <<'PY'
import datetime, json, os, re, sys
posted, size, values, points = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if posted["values"] < values:
    sys.exit(f"store-size.sh: only {posted['values']} values posted")
per = size / posted["values"]
line = (f"store  {posted['values']} values ({points} points a time, one second apart) in "
        f"{posted['seconds']} s: the file is {size} bytes, {per:.1f} bytes a value, "
        f"{per * 1e6 / 1e6:.1f} MB per million values")
print(line)
text = (f"<!-- store-size:begin (written by scripts/store-size.sh, {datetime.date.today()}) -->\n"
        f"{posted['values']:,} values ({points} points a time, one second apart, floats with one decimal, "
        f"posted in {posted['seconds']} s) make a data file of **{size / 1e6:.1f} MB: {per:.1f} bytes a value**, "
        f"about {per:.0f} MB per million values.\n<!-- store-size:end -->")
path = os.path.join("docs", "serve.md")
page = open(path).read()
new, n = re.subn(r"<!-- store-size:begin.*?<!-- store-size:end -->", lambda _: text, page, flags=re.S)
if n != 1:
    sys.exit("docs/serve.md has no store-size:begin/store-size:end markers")
open(path, "w").write(new)
PY
