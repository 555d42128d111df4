#!/usr/bin/env bash
# Start-up against the floor: an empty `fn main() {}` built with this crate's own release
# profile (and whatever RUSTFLAGS are set), timed round-robin with `--version`, `recommend` on
# the embedded model, and the fixed part of a probe (a CoAP probe of a closed UDP port:
# runtime, socket, one datagram, the ICMP refusal and the report, no waiting on a peer). The
# floor is built twice: linked as Rust links it (the goal's floor, issue 31: what a user's own
# empty program costs) and linked as this crate is (without libgcc_s, build.rs), which is
# faster; a row's ratio is to the first, and its peer column gives the ratio to the second.
# Prints medians and ratios, and writes them into docs/performance.json and
# docs/performance.md (scripts/perf_doc.py; NO_WRITE=1 prints only). Needs python3 and a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release/enos-connect}
floor_dir=${FLOOR_DIR:-$PWD/target/bench-floor}
mkdir -p "$floor_dir/src"
echo 'fn main() {}' > "$floor_dir/src/main.rs"
python3 - "$floor_dir/Cargo.toml" <<'PY'
import sys, tomllib
profile = tomllib.load(open("Cargo.toml", "rb"))["profile"]["release"]
lines = ['[package]', 'name = "floor"', 'version = "0.1.0"', 'edition = "2024"', '', '[workspace]', '', '[profile.release]']
lines += [f"{k} = {v!r}".replace("'", '"').replace("True", "true").replace("False", "false") for k, v in profile.items()]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
# The floor links the way this crate does: build.rs's link_unwinder_statically() goes into the
# floor's own build.rs. A second floor keeps Rust's default link, to show what that saves.
default_dir="$floor_dir/default"
mkdir -p "$default_dir/src"
cp "$floor_dir/Cargo.toml" "$floor_dir/src/main.rs" "$default_dir/" && mv "$default_dir/main.rs" "$default_dir/src/"
python3 - build.rs "$floor_dir/build.rs" <<'PY'
import re, sys
fn = re.search(r"\nfn link_unwinder_statically\(\) \{.*?\n\}\n", open(sys.argv[1]).read(), re.S)
if not fn:
    sys.exit("build.rs has no link_unwinder_statically()")
open(sys.argv[2], "w").write("fn main() {\n    link_unwinder_statically();\n}\n" + fn.group(0))
PY
cargo build --quiet --release --manifest-path "$floor_dir/Cargo.toml" --target-dir "$floor_dir/target"
cargo build --quiet --release --manifest-path "$default_dir/Cargo.toml" --target-dir "$default_dir/target"
# Both binaries are timed from copies, as `cargo install` or a package leaves them: here a
# file straight from the linker started 10 to 15% slower than a copy of itself (how its pages
# sit in the page cache), which would measure the build, not the program.
copies=$(mktemp -d)
trap 'rm -rf "$copies"' EXIT
cp "$floor_dir/target/release/floor" "$copies/floor"
cp "$default_dir/target/release/floor" "$copies/floor-default"
cp "$bin" "$copies/enos-connect"
floor="$copies/floor"
bin="$copies/enos-connect"
closed=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The probe of a closed port exits 1 (refused), which is what it is meant to do here.
runs=${RUNS:-1000}
python3 scripts/interleave.py --runs "$runs" --json --exit 0 --exit 1 \
  --name "empty fn main() (floor)" --name "enos-connect --version" --name "recommend -f json" --name "probe, fixed part" \
  --name "empty fn main(), Rust's default link" \
  "$floor" "$bin --version" \
  "$bin recommend -a network=tcp -a enos_format=yes -a enos_version=2 -n ota,file_upload -f json" \
  "$bin probe coap://127.0.0.1:$closed/ -f json --timeout 2" "$copies/floor-default" > "$copies/startup.json"
python3 - "$copies/startup.json" "$runs" <<'PY'
import json, os, subprocess, sys
rows = json.load(open(sys.argv[1]))
floor = rows[0]["median_ms"]
default = rows[4]["median_ms"]
print("  median   / Rust's link   / this crate's link")
for x in rows:
    ms = x["median_ms"]
    print(f"{ms:8.3f} ms  {ms / default:5.2f}x  {ms / floor:5.2f}x  {x['name']}")
if os.environ.get("NO_WRITE") == "1":
    sys.exit(0)
command = ("RUNS=" + os.environ["RUNS"] + " " if "RUNS" in os.environ else "") + "scripts/bench-startup.sh"
# The goal's floor is issue 31's: an empty program built with the same profile, linked as Rust
# links it. The floor linked as this crate is (without libgcc_s, build.rs) is 0.2 ms faster, so
# against it every ratio is higher; the peer column gives that ratio too.
for x, (id_, what) in zip(rows[1:4], [("startup_version", "start-up, `--version`"),
                                     ("startup_recommend", "start-up and work: `recommend ... -f json`"),
                                     ("startup_probe", "a probe's fixed part (CoAP to a closed port)")]):
    ms = x["median_ms"]
    peer = (f"empty `fn main() {{}}`, same profile: {default:.3f} ms (linked as this crate is, "
            f"without `libgcc_s`: {floor:.3f} ms, and against that {ms / floor:.2f}x)")
    subprocess.run([sys.executable, "scripts/perf_doc.py", "put", id_, "--what", what,
                    "--ours", f"{ms:.3f} ms", "--peer", peer,
                    "--ratio", f"{ms / default:.4f}", "--goal", "≤ 1.25", "--command", command], check=True)
PY
