#!/usr/bin/env python3
"""Run the benchmark scripts (bench-startup.sh, bench-probe.sh, bench-batch.sh) and write their
figures into docs/performance.md's table, between the `speed:begin` and `speed:end` markers,
with each goal and whether this run met it. The scripts' own output is printed as it comes.
Needs what the scripts need and a release build."""
import datetime, os, re, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script):
    print(f"== {script}", flush=True)
    out = subprocess.run([os.path.join(root, "scripts", script)], cwd=root, capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    if out.returncode != 0:
        sys.exit(f"{script} failed:\n{out.stderr}")
    return out.stdout


def find(pattern, text, what):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit(f"cannot find {what} in the output")
    return m


startup = run("bench-startup.sh")
probe = run("bench-probe.sh")
batch = run("bench-batch.sh")

rows = []
def row(what, ours, peer, ratio, goal, met):
    rows.append(f"| {what} | {ours} | {peer} | {ratio:.2f} | {goal} | {'yes' if met else '**no**'} |")

floor = find(r"^\s*([\d.]+) ms\s+1\.00x\s+empty", startup, "the floor")
for name, label in [("enos-connect --version", "start-up, `--version`"),
                    ("recommend -f json", "`recommend ... -f json`"),
                    ("probe, fixed part", "probe, fixed part (CoAP to a closed port)")]:
    m = find(rf"^\s*([\d.]+) ms\s+([\d.]+)x\s+{re.escape(name)}$", startup, name)
    r = float(m.group(2))
    row(label, f"{m.group(1)} ms", f"empty `fn main() {{}}`, same profile: {floor.group(1)} ms", r, "≤ 1.25", r <= 1.25)
for proto, label in [("mqtt", "MQTT probe: connect, publish at QoS 1"), ("coap", "CoAP probe: GET"), ("http", "HTTP probe: GET")]:
    m = find(rf"^{proto}\s+enos-connect ([\d.]+) ms\s+(\S+) ([\d.]+) ms\s+ratio ([\d.]+)", probe, proto)
    r = float(m.group(4))
    row(label, f"{m.group(1)} ms", f"`{m.group(2)}` {m.group(3)} ms", r, "≤ 1.00", r <= 1.0)
m = find(r"^load\s+serve (\d+)/s.*mosquitto (\d+)/s.*ratio ([\d.]+)\s+\((\d+) rounds, (\d+) failed\)", probe, "load")
r = float(m.group(3))
row("load, 2000 at concurrency 50: `serve` (EnOS login and measure point post) against mosquitto (QoS 1 publish)",
    f"{m.group(1)}/s, {m.group(5)} failed", f"mosquitto {m.group(2)}/s", r, "≥ 0.80, none failed", r >= 0.8 and m.group(5) == "0")
m = find(r"^data\s+serve --data (\d+)/s\s+serve in memory (\d+)/s\s+ratio ([\d.]+)\s+\((\d+) rounds\)", probe, "data")
r = float(m.group(3))
row("load, 2000 at concurrency 50: `serve --data FILE` (every post committed to SQLite before its reply) against `serve` in memory, round-robin",
    f"{m.group(1)}/s", f"in memory {m.group(2)}/s", r, "≥ 0.80", r >= 0.8)
cut = find(r"^([\d.]+) s median\s+ratio 1\.00\s+fleet\.csv", batch, "cut")
m = find(r"^([\d.]+) s median\s+ratio ([\d.]+)\s+recommend --batch fleet\.csv$", batch, "batch")
r = float(m.group(2))
row("`recommend --batch`, 1M CSV rows", f"{m.group(1)} s", f"`cut -d, -f1` {cut.group(1)} s", r, "≤ 4", r <= 4)
cut_r = find(r"^([\d.]+) s median\s+ratio 1\.00\s+random\.csv", batch, "cut on random rows")
m_r = find(r"^([\d.]+) s median\s+ratio ([\d.]+)\s+recommend --batch random\.csv$", batch, "batch on random rows")
r_r = float(m_r.group(2))
row("`recommend --batch`, 1M rows of a user's fleet (random needs in random order, some answers left to defaults)", f"{m_r.group(1)} s",
    f"`cut -d, -f1` {cut_r.group(1)} s", r_r, "≤ 2.0", r_r <= 2.0)
for name in ("fleet", "random"):
    rss = find(rf"^peak RSS of one batch run on {name}\.csv: ([\d.]+) MB", batch, f"RSS on {name}.csv")
    rows.append(f"| batch peak RSS ({name}.csv) | {rss.group(1)} MB | | | < 30 MB | {'yes' if float(rss.group(1)) < 30 else '**no**'} |")

table = "\n".join([
    f"<!-- speed:begin (written by scripts/bench-readme.py, {datetime.date.today()}) -->",
    "| what | enos-connect | peer | ratio | goal | met |",
    "|---|---|---|---|---|---|",
    *rows,
    "<!-- speed:end -->",
])
path = os.path.join(root, "docs", "performance.md")
text = open(path).read()
new, n = re.subn(r"<!-- speed:begin.*?<!-- speed:end -->", lambda _: table, text, flags=re.S)
if n != 1:
    sys.exit("docs/performance.md has no speed:begin/speed:end markers")
open(path, "w").write(new)
print(table)
