#!/usr/bin/env python3
"""A fleet on one machine, measured as a user measures a server: RSS of the server process
above its idle size, over the connections held, once the fleet has settled.

Each round runs, in turn, each with a fresh server:
  serve      `probe --fleet` (EnOS logins, dynamic activation, a QoS 1 measure point post
             every EVERY, EnOS's reply) against `serve --connack-delay-ms 0 --quiet`
  base       the same against another build of serve (BASE_SERVE=path), when given
  mosquitto  the same `probe --fleet` against mosquitto (each device subscribes to its reply
             topic, which mosquitto keeps in its subscription tree)
  plain      mosquitto under a plain fleet (scripts/fleet_plain.py): anonymous clients, no
             subscription, a QoS 1 publish every EVERY: what a user measures of mosquitto
Figures per run: the server's idle RSS (1 s after it listens), its RSS settled (the median of
samples every 0.5 s from the end of the ramp plus SETTLE seconds to 1 s before the first
device's hold ends), (settled - idle) / connections held; the server's CPU (user + system)
over the whole run, logins included, per post acknowledged; delivered; the p99 of the
answer; and for `probe --fleet` against serve its own settled RSS per device held (the fleet
simulator's cost, its whole RSS over the devices). Rounds interleave the servers; the
figures printed are medians over rounds (ratios: the median of each round's ratio).

Env: N (3000), EVERY (2s), HOLD (30s), RATE (3000 logins/s), ROUNDS (3), SETTLE (4 s),
BIN, SERVE_BIN, BASE_SERVE, NO_WRITE=1 (print only; otherwise the figures go into
docs/performance.json and docs/performance.md through scripts/perf_doc.py).
Needs mosquitto, python3 and a release build.
"""
import json, os, re, resource, shlex, socket, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
env = os.environ
n = int(env.get("N", "3000"))
every_text, hold_text = env.get("EVERY", "2s"), env.get("HOLD", "30s")
rate = float(env.get("RATE", "3000"))
rounds = int(env.get("ROUNDS", "3"))
settle = float(env.get("SETTLE", "4"))
bin_ = env.get("BIN", os.path.join(root, "target/release/enos-connect"))
serve_bin = env.get("SERVE_BIN", bin_)
base_serve = env.get("BASE_SERVE")


def secs(t):
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", t)
    return float(m[1]) * {"ms": .001, "s": 1, "m": 60, "h": 3600}[m[2] or "s"]


every, hold = secs(every_text), secs(hold_text)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
hz = os.sysconf("SC_CLK_TCK")
tmp = tempfile.mkdtemp()


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz


def listening(p, proc):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench-fleet: the server exited ({proc.returncode}) before it listened")
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("bench-fleet: the server did not listen within 20 s")


with open(os.path.join(tmp, "one.toml"), "w") as f:
    f.write('[[products]]\nkey = "PkFleet"\nsecret = "Fleet-Product-Secret"\nmeasurepoints = ["temp"]\n'
            '[[devices]]\nproduct = "PkFleet"\nkey = "fleet-1"\n')
with open(os.path.join(tmp, "registry.toml"), "w") as f:
    f.write('[[products]]\nkey = "PkFleet"\nsecret = "Fleet-Product-Secret"\nmeasurepoints = ["temp"]\n')
    for i in range(1, n + 1):
        f.write(f'[[devices]]\nproduct = "PkFleet"\nkey = "fleet-{i}"\n')
child_env = dict(env, ENOS_PRODUCT_SECRET="Fleet-Product-Secret")


def server(kind, p, registry="registry.toml"):
    if kind in ("serve", "base"):
        exe = serve_bin if kind == "serve" else base_serve
        return [exe, "serve", "--registry", os.path.join(tmp, registry), "--mqtt", f"127.0.0.1:{p}",
                "--http", "off", "--coap", "off", "--console", "off", "--connack-delay-ms", "0", "--quiet"]
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {p} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                "max_inflight_messages 0\nset_tcp_nodelay true\n")
    return ["mosquitto", "-c", conf]


def client(kind, p):
    if kind == "plain":
        return [sys.executable, os.path.join(root, "scripts/fleet_plain.py"), "127.0.0.1", str(p), str(n),
                str(every), str(hold), str(rate)]
    return [bin_, "probe", f"mqtt://127.0.0.1:{p}", "--fleet", "--devices", str(n), "--product-key", "PkFleet",
            "-m", "temp=21.5", "--every", every_text, "--hold", hold_text, "--rate", f"{rate:g}", "--timeout", "20",
            "-f", "json"]


def bare_idle(kind):
    """serve's idle RSS with a registry of one device: what its idle size owes to the registry
    of the fleet (each device's entry and twin record, and what parsing it left) is the rest."""
    p = port()
    srv = subprocess.Popen(server(kind, p, "one.toml"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env)
    try:
        listening(p, srv)
        time.sleep(1)
        return rss_kb(srv.pid)
    finally:
        srv.terminate()
        srv.wait()


def run(kind):
    bare = bare_idle(kind) if kind in ("serve", "base") else None
    p = port()
    srv = subprocess.Popen(server(kind, p), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env)
    cl = None
    try:
        listening(p, srv)
        time.sleep(1)
        idle = statistics.median(rss_kb(srv.pid) or 0 for _ in range(3) if time.sleep(0.2) is None)
        c0 = cpu_s(srv.pid)
        out = open(os.path.join(tmp, f"{kind}.json"), "w+")
        t0 = time.monotonic()
        cl = subprocess.Popen(client(kind, p), stdout=out, stderr=subprocess.DEVNULL, env=child_env)
        samples = []
        while True:
            pid, status, usage = os.wait4(cl.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.monotonic() - t0, rss_kb(srv.pid), rss_kb(cl.pid), cpu_s(srv.pid)))
            time.sleep(0.5)
        cpu = cpu_s(srv.pid) - c0
        client_cpu = usage.ru_utime + usage.ru_stime
    finally:
        if cl is not None and cl.poll() is None:
            cl.kill()
            cl.wait()
        srv.terminate()
        srv.wait()
    out.seek(0)
    text = out.read().strip()
    try:
        r = json.loads(text)
    except ValueError:
        sys.exit(f"bench-fleet: {kind}: the client printed no report: {text[-300:]!r}")
    if kind == "plain":
        held, acked, offered, ramp = r["connected"], r["acked"], r["offered"], r["ramp_s"]
        p99 = None
    else:
        f = r["fleet"]
        held, acked, offered = f["peak_connected"], f["acked"], f.get("offered", 0)
        ramp = n / rate
        stage = r["stages"].get("reply") or r["stages"].get("puback") or {}
        p99 = stage.get("p99_ms")
    lo, hi = ramp + settle, hold - 1
    window = [s for s in samples if lo <= s[0] <= hi and s[1] is not None]
    if not window:
        sys.exit(f"bench-fleet: no sample between {lo:.1f} s and {hi:.1f} s: HOLD must exceed N/RATE + SETTLE + 1")
    settled = statistics.median(s[1] for s in window)
    sim = statistics.median(s[2] for s in window if s[2] is not None)
    # The steady part: the server's CPU between the window's first and last samples over the
    # posts the probe's timeline counts acknowledged in those seconds (no logins among them).
    steady = None
    ticks = r.get("fleet", {}).get("timeline", [])
    inside = [t for t in ticks if lo <= t["t_s"] <= hi]
    if len(inside) > 2:
        # The timeline counts since the probe started, a tick a second: the posts acknowledged
        # between two ticks, and the server's CPU between the samples nearest those seconds.
        a, b = inside[0], inside[-1]
        cpu_at = lambda t: min(samples, key=lambda s: abs(s[0] - t))[3]
        acked_in = b["acked"] - a["acked"]
        steady = (cpu_at(b["t_s"]) - cpu_at(a["t_s"])) / acked_in * 1e6 if acked_in > 0 else None
    return {"kind": kind, "idle_kb": idle, "bare_kb": bare,
            "kb_per_device": (settled - (bare if bare is not None else idle)) / max(held, 1), "settled_kb": settled, "held": held, "acked": acked,
            "offered": offered, "kb_per_conn": (settled - idle) / max(held, 1),
            "cpu_us_per_msg": cpu / max(acked, 1) * 1e6, "steady_us_per_msg": steady, "p99_ms": p99,
            "delivered": acked / offered if offered else None,
            "sim_kb_per_device": sim / max(held, 1), "client_cpu_us_per_msg": client_cpu / max(acked, 1) * 1e6}


kinds = ["serve"] + (["base"] if base_serve else []) + ["mosquitto", "plain"]
print(f"N={n} every={every_text} hold={hold_text} rate={rate:g} rounds={rounds}; load before: "
      f"{' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
head = f"{'round':>5} {'server':10} {'idle MB':>8} {'settled MB':>10} {'KB/conn':>8} {'us/msg':>7} {'steady':>7} {'p99 ms':>7} {'held':>7} {'sim KB/dev':>10}"
print(head, flush=True)
runs = {k: [] for k in kinds}
for rd in range(rounds):
    for k in kinds:
        x = run(k)
        runs[k].append(x)
        p99 = "" if x["p99_ms"] is None else f"{x['p99_ms']:.2f}"
        sim = f"{x['sim_kb_per_device']:.2f}" if k == "serve" else ""
        steady = "" if x["steady_us_per_msg"] is None else f"{x['steady_us_per_msg']:.1f}"
        print(f"{rd + 1:>5} {k:10} {x['idle_kb'] / 1024:8.1f} {x['settled_kb'] / 1024:10.1f} {x['kb_per_conn']:8.2f} "
              f"{x['cpu_us_per_msg']:7.1f} {steady:>7} {p99:>7} {x['held']:>7} {sim:>10}", flush=True)


def med(k, field):
    vals = [x[field] for x in runs[k] if x[field] is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b, field):
    return statistics.median(x[field] / y[field] for x, y in zip(runs[a], runs[b]))


print("medians:")
for k in kinds:
    print(f"  {k:10} {med(k, 'kb_per_conn'):.2f} KB per held connection, {med(k, 'cpu_us_per_msg'):.1f} us CPU per "
          f"post answered, held {min(x['held'] for x in runs[k])}/{n}, delivered "
          f"{min((x['delivered'] or 0) for x in runs[k]):.4f}")
rss_plain, rss_fleet = ratio("serve", "plain", "kb_per_conn"), ratio("serve", "mosquitto", "kb_per_conn")
rss_device = ratio("serve", "plain", "kb_per_device")
cpu_fleet = ratio("serve", "mosquitto", "cpu_us_per_msg")
cpu_steady = ratio("serve", "mosquitto", "steady_us_per_msg")
print(f"serve: {med('serve', 'kb_per_device'):.2f} KB per held device above the idle size with a one-device registry "
      f"({med('serve', 'bare_kb') / 1024:.1f} MB), {rss_device:.2f}x mosquitto's plain per connection")
print(f"serve / mosquitto: RSS per held connection {rss_plain:.2f}x (plain fleet), {rss_fleet:.2f}x "
      f"(the same probe --fleet); CPU per post {cpu_fleet:.2f}x, logins included, {cpu_steady:.2f}x while posting (the same probe --fleet); probe --fleet's own RSS "
      f"{med('serve', 'sim_kb_per_device'):.2f} KB per device")
if base_serve:
    print(f"the build before: {med('base', 'kb_per_conn'):.2f} KB per held connection, "
          f"{med('base', 'cpu_us_per_msg'):.1f} us per post")
print(f"load after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
subprocess.run(["rm", "-rf", tmp])
if env.get("NO_WRITE") == "1":
    sys.exit(0)

parts = [f"{k}={env[k]}" for k in ("N", "EVERY", "HOLD", "RATE", "ROUNDS", "SETTLE", "BASE_SERVE") if k in env]
command = " ".join(parts + ["scripts/bench-fleet.sh"])
doc = [sys.executable, os.path.join(root, "scripts/perf_doc.py")]
held_all = all(x["held"] == n for k in kinds for x in runs[k])
subprocess.run(doc + [
    "put", f"fleet_rss_{n}",
    "--what", f"`serve`, {n:,} devices posting every {every_text}: RSS per held connection (above idle, settled) / mosquitto's, a plain anonymous QoS 1 fleet",
    "--ours", f"{med('serve', 'kb_per_conn'):.2f} KB",
    "--peer", f"mosquitto {med('plain', 'kb_per_conn'):.2f} KB (under the same `probe --fleet`, subscribing: {med('mosquitto', 'kb_per_conn'):.2f} KB)",
    "--ratio", f"{rss_plain:.4f}", "--goal", "≤ 3", "--command", command], check=True)
subprocess.run(doc + [
    "put", f"fleet_device_{n}",
    "--what", f"same run: RSS per held device, its registry entry and twin record included (above the idle size of `serve` with a one-device registry) / mosquitto's per connection, plain fleet",
    "--ours", f"{med('serve', 'kb_per_device'):.2f} KB", "--peer", f"mosquitto {med('plain', 'kb_per_conn'):.2f} KB",
    "--ratio", f"{rss_device:.4f}", "--goal", "≤ 3", "--command", command], check=True)
if n == 3000:
    subprocess.run(doc + [
        "put", "fleet_cpu",
        "--what", "same run: server CPU per post answered while the fleet posts (logins not counted), `serve` / mosquitto's per PUBACK, the same `probe --fleet`",
        "--ours", f"{med('serve', 'steady_us_per_msg'):.1f} µs (logins included: {med('serve', 'cpu_us_per_msg'):.1f} µs)",
        "--peer", f"mosquitto {med('mosquitto', 'steady_us_per_msg'):.1f} µs (logins included: {med('mosquitto', 'cpu_us_per_msg'):.1f} µs, {cpu_fleet:.2f}x)",
        "--ratio", f"{cpu_steady:.4f}", "--goal", "≤ 1.5", "--command", command], check=True)
if n >= 19000:
    subprocess.run(doc + [
        "put", "fleet_sim_rss",
        "--what", f"`probe --fleet` holding {n:,} devices: its whole RSS (settled) per device held",
        "--ours", f"{med('serve', 'sim_kb_per_device'):.2f} KB", "--value", f"{med('serve', 'sim_kb_per_device'):.4f}",
        "--goal", "≤ 4 KB", "--command", command], check=True)
rows = ["| server, client | held | RSS idle (with a one-device registry) | RSS settled | per held connection (per device, registry and twin included) | CPU per post, logins included | CPU per post while posting | delivered | p99 answer |",
        "|---|---|---|---|---|---|---|---|---|"]
names = {"serve": "`serve`, `probe --fleet`", "base": "`serve` (the build before), `probe --fleet`",
         "mosquitto": "mosquitto, `probe --fleet` (subscribes to its replies)", "plain": "mosquitto, plain anonymous fleet (`fleet_plain.py`)"}
for k in kinds:
    p99 = med(k, "p99_ms")
    bare = "" if med(k, "bare_kb") is None else f" ({med(k, 'bare_kb') / 1024:.1f} MB)"
    per_device = f" ({med(k, 'kb_per_device'):.2f} KB)" if k in ("serve", "base") else ""
    rows.append(f"| {names[k]} | {min(x['held'] for x in runs[k]):,}/{n:,} | {med(k, 'idle_kb') / 1024:.1f} MB{bare} | "
                f"{med(k, 'settled_kb') / 1024:.1f} MB | {med(k, 'kb_per_conn'):.2f} KB{per_device} | {med(k, 'cpu_us_per_msg'):.1f} µs | "
                f"{'' if med(k, 'steady_us_per_msg') is None else format(med(k, 'steady_us_per_msg'), '.1f') + ' µs'} | "
                f"{min((x['delivered'] or 0) for x in runs[k]):.4f} | {'' if p99 is None else f'{p99:.2f} ms'} |")
rows.append(f"| `probe --fleet` itself (against serve) | | | | {med('serve', 'sim_kb_per_device'):.2f} KB per device (whole RSS) | "
            f"{med('serve', 'client_cpu_us_per_msg'):.1f} µs (its own) | | | |")
subprocess.run(doc + ["table", f"fleet-{n}", "--command", command], input="\n".join(rows), text=True, check=True)
if not held_all:
    print("bench-fleet: not every device was held in every run (see `held`)", file=sys.stderr)
