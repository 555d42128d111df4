#!/usr/bin/env bash
# What one held MQTT connection allocates in serve, by part: runs tests/held_memory.rs with
# dhat's heap profile written while its devices are held (ENOS_CONNECT_HEAP_PROFILE), and
# sorts the blocks still live then (one or more per device) by the code that allocated them.
# A debug build, as `cargo test` builds it (a release build's futures are smaller). Prints
# the table and, unless NO_WRITE=1, records it in docs/performance.json and .md
# (scripts/perf_doc.py table held). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ENOS_CONNECT_HEAP_PROFILE="$dir/dhat.json" cargo test --quiet --test held_memory -- --nocapture 2>&1 |
  grep 'a held connection' | tee "$dir/total.txt"
python3 - "$dir/dhat.json" "$dir/total.txt" > "$dir/table.md" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1])); ft = d["ftbl"]
total = open(sys.argv[2]).read().strip()
# The test holds WARM + HELD devices while the profile is written (tests/held_memory.rs).
src = open("tests/held_memory.rs").read()
devices = sum(int(re.search(rf"const {c}: usize = (\d+);", src).group(1)) for c in ("WARM", "HELD"))
# First match wins: (what the frames contain, the part).
parts = [
    ("RegistrationSet::allocate", "the socket's registration with tokio's reactor"),
    ("RawTask::new", "the connection's task: its held loop's future and tokio's task header"),
    ("PointValue", "twin: the last value of each point (`Keyed<PointValue>`)"),
    ("history::Sample", "twin: the point's history in memory, its values (grows with posts)"),
    ("history::Series", "twin: the point's history in memory, its table (`Keyed<Series>`)"),
    ("Mailbox", "the mailbox commands reach the connection through, and its table entry"),
    ("set_issued_secret", "twin: the secret dynamic activation issued"),
    ("mqtt_held.rs", "the connection's client id (shared by its tables)"),
    ("mqtt_clients", "the client id table"),
    ("accept", "accepting: the connection's state before it is held"),
]
# Made at start for every device of the registry, held or not: not the connection's.
twin = "the twin's record (`DeviceState`, boxed in the twin's map, and its key)"
at_start = [("seeded (src/serve/twin.rs", twin), ("twin::seeded", twin),
            ("Registry::parse", "the registry's entry and index"), ("toml::de", "the registry's entry and index")]
rows, start = {}, {}
for pp in d["pps"]:
    frames = " ".join(ft[i] for i in pp["fs"])
    made_at_start = next((p for key, p in at_start if key in frames), None)
    if made_at_start:
        b, k = start.get(made_at_start, (0, 0))
        start[made_at_start] = (b + pp["eb"], k + pp["ebk"])
        continue
    if pp["ebk"] < devices / 2:  # not one block per device: tables made once, lazy statics
        continue
    part = next((p for key, p in parts if key in frames), "other (no frame of ours among dhat's first 12)")
    b, k = rows.get(part, (0, 0))
    rows[part] = (b + pp["eb"], k + pp["ebk"])
print("| part | bytes per device | blocks |")
print("|---|---|---|")
for part, (b, k) in sorted(rows.items(), key=lambda r: -r[1][0]):
    print(f"| {part} | {b / devices:.0f} | {k / devices:.2f} |")
s = sum(b for b, _ in rows.values()); k = sum(k for _, k in rows.values())
print(f"| **a held connection**: all of the above | **{s / devices:.0f}** | {k / devices:.2f} |")
for part, (b, k) in sorted(start.items(), key=lambda r: -r[1][0]):
    print(f"| made at start for every device of the registry, held or not: {part} | {b / devices:.0f} | {k / devices:.2f} |")
s2 = sum(b for b, _ in start.values())
print(f"| **a held device, its registry entry and twin record included** | **{(s + s2) / devices:.0f}** | |")
print(f"| the test's own count ({total}) | | |")
PY
cat "$dir/table.md"
[ "${NO_WRITE:-}" = 1 ] || python3 scripts/perf_doc.py table held --command "scripts/bench-held.sh (debug build, dhat)" < "$dir/table.md"
