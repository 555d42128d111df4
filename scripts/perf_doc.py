#!/usr/bin/env python3
"""docs/performance.json holds every figure the benchmark scripts measured, each with the date
and the command of its run; docs/performance.md shows them in tables this script writes
between markers (`<!-- NAME:begin ... -->` and `<!-- NAME:end -->`). No figure is typed by
hand: a script measures it and calls `put` or `table`, and `check` (run by tests/it/docs.rs)
fails when the doc differs from what the JSON renders.

usage:
  perf_doc.py put ID --what TEXT --ours TEXT [--peer TEXT] [--ratio R] [--value V] --goal GOAL --command CMD
      one row of the summary table (`perf`); whether the goal is met is worked out here, from
      the ratio (or --value, for a figure without a peer) and the goal (`≤ 1.25`, `≥ 0.9`,
      `< 30 MB`: a comparison and a number, a unit after it allowed)
  perf_doc.py table NAME --command CMD < ROWS.md
      a table of its own (the header and rows a script wrote), between NAME's markers
  perf_doc.py render | check [--json FILE] [--doc FILE]
"""
import argparse, datetime, difflib, json, os, re, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON = os.path.join(root, "docs", "performance.json")
DOC = os.path.join(root, "docs", "performance.md")
# Other pages may show a table of docs/performance.json between the same markers (optional there).
PAGES = [os.path.join(root, p) for p in ("README.md", "docs/serve.md", "docs/fleets.md")]
# The summary's rows, in the order the table shows them (a figure not listed comes last).
ORDER = [
    "fleet_rss_3000", "fleet_device_3000", "fleet_rss_19000", "fleet_device_19000", "fleet_cpu", "fleet_sim_rss", "load", "data_load",
    "startup_version", "startup_recommend", "startup_probe", "probe_mqtt", "probe_coap",
    "probe_http", "batch_random", "batch_survey", "batch_rss",
]


def met(value, goal):
    m = re.match(r"\s*(≤|≥|<|>)\s*([\d.]+)", goal)
    if not m or value is None:
        sys.exit(f"perf_doc.py: cannot read the goal `{goal}` (≤, ≥, < or > and a number)")
    limit = float(m.group(2))
    return {"≤": value <= limit, "≥": value >= limit, "<": value < limit, ">": value > limit}[m.group(1)]


def cell(text):
    return str(text).replace("|", "\\|")


def summary(figures):
    ids = sorted(figures, key=lambda i: (ORDER.index(i) if i in ORDER else len(ORDER), i))
    lines = [
        "<!-- perf:begin (written by scripts/perf_doc.py from docs/performance.json; each row's run in its last column) -->",
        "| figure | enos-connect | peer | ratio | goal | met | measured by |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in ids:
        f = figures[i]
        value = f.get("value", f.get("ratio"))
        ratio = "" if f.get("ratio") is None else f"{f['ratio']:.2f}"
        ok = "yes" if met(value, f["goal"]) else "**no**"
        lines.append(f"| {cell(f['what'])} | {cell(f['ours'])} | {cell(f.get('peer', ''))} | {ratio} | "
                     f"{cell(f['goal'])} | {ok} | `{cell(f['command'])}`, {f['date']} |")
    lines.append("<!-- perf:end -->")
    return lines


def table(name, t):
    return [f"<!-- {name}:begin (written by `{t['command']}`, {t['date']}; kept in docs/performance.json) -->",
            *t["lines"], f"<!-- {name}:end -->"]


def render(data, doc, required=True):
    blocks = {"perf": summary(data.get("figures", {}))}
    for name, t in data.get("tables", {}).items():
        blocks[name] = table(name, t)
    for name, lines in blocks.items():
        pattern = rf"<!-- {re.escape(name)}:begin.*?<!-- {re.escape(name)}:end -->"
        doc, n = re.subn(pattern, lambda _: "\n".join(lines), doc, flags=re.S)
        if n > 1 or (n == 0 and required):
            sys.exit(f"perf_doc.py: docs/performance.md needs one `<!-- {name}:begin -->` ... `<!-- {name}:end -->` (found {n})")
    return doc


def load(path):
    try:
        return json.load(open(path))
    except FileNotFoundError:
        return {"figures": {}, "tables": {}}


def save(data, path):
    with open(path, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("verb", choices=["put", "table", "render", "check"])
    ap.add_argument("id", nargs="?")
    ap.add_argument("--what"); ap.add_argument("--ours"); ap.add_argument("--peer", default="")
    ap.add_argument("--ratio", type=float); ap.add_argument("--value", type=float)
    ap.add_argument("--goal"); ap.add_argument("--command")
    ap.add_argument("--json", default=JSON); ap.add_argument("--doc", default=DOC)
    a = ap.parse_args()
    data = load(a.json)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    if a.verb == "put":
        if not (a.id and a.what and a.ours and a.goal and a.command):
            sys.exit("perf_doc.py put: ID, --what, --ours, --goal and --command are needed")
        f = {"what": a.what, "ours": a.ours, "peer": a.peer, "ratio": a.ratio, "goal": a.goal,
             "command": a.command, "date": today}
        if a.value is not None:
            f["value"] = a.value
        met(a.value if a.value is not None else a.ratio, a.goal)
        data.setdefault("figures", {})[a.id] = f
    elif a.verb == "table":
        if not (a.id and a.command):
            sys.exit("perf_doc.py table: NAME and --command are needed")
        lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
        data.setdefault("tables", {})[a.id] = {"command": a.command, "date": today, "lines": lines}
    pages = {a.doc: True, **{p: False for p in PAGES}}
    texts = {p: open(p).read() for p in pages}
    new = {p: render(data, t, pages[p]) for p, t in texts.items()}
    if a.verb == "check":
        differ = [p for p in pages if new[p] != texts[p]]
        for p in differ:
            name = os.path.relpath(p, root)
            sys.stdout.writelines(difflib.unified_diff(texts[p].splitlines(True), new[p].splitlines(True),
                                                       name, "rendered from docs/performance.json"))
        if differ:
            sys.exit(f"{', '.join(os.path.relpath(p, root) for p in differ)} differs from what docs/performance.json "
                     "renders: run `python3 scripts/perf_doc.py render` (or the benchmark that measured it)")
        return
    if a.verb in ("put", "table"):
        save(data, a.json)
    for p in pages:
        if new[p] != texts[p]:
            with open(p, "w") as f:
                f.write(new[p])


main()
