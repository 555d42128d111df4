#!/usr/bin/env python3
"""Load with and without the web console: N MQTT devices (EnOS securemode 2 logins, one asyncio
connection each, raw MQTT 3.1.1) post a measure point every INTERVAL seconds against
`enos-connect serve`, once with no browser on the console and once with a console stream open
(GET /console/api/stream read as fast as it comes, like the fleet page), plus one stream that
is opened and never read (a stuck browser tab); also with the console listening and no page
open ("idle"). Prints, per run, the posts answered per second
in the steady window, reply latency percentiles, serve's CPU and its RSS (peak and at the end),
then the ratio of the rates. Python standard library only.

usage: scripts/bench-console.py [--bin target/release/enos-connect] [--devices 1000]
                                [--seconds 30] [--interval 1.0] [--rounds 1]
--interval 0 posts back to back (each device waits for its reply): serve's ceiling.
"""
import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

PK = "bench"
SECRET = "Bench-Device-Secret"


def registry(n):
    out = ['[[products]]\nkey = "bench"\nmeasurepoints = ["temp", "power"]\n']
    for i in range(n):
        out.append('[[devices]]\nproduct = "bench"\nkey = "d%05d"\nsecret = "%s"\n' % (i, SECRET))
    return "\n".join(out)


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return len(b).to_bytes(2, "big") + b


def packet(kind, body):
    n, rl = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        rl.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([kind]) + bytes(rl) + body


def connect_packet(dk):
    ts = str(int(time.time() * 1000))
    cid = dk
    sign = hashlib.sha256(("clientId%sdeviceKey%sproductKey%stimestamp%s%s" % (cid, dk, PK, ts, SECRET)).encode()).hexdigest().upper()
    client_id = "%s|securemode=2,signmethod=sha256,timestamp=%s|" % (cid, ts)
    var = s("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    return packet(0x10, var + s(client_id) + s("%s&%s" % (dk, PK)) + s(sign))


async def read_packet(r):
    first = (await r.readexactly(1))[0]
    mult, n = 1, 0
    while True:
        b = (await r.readexactly(1))[0]
        n += (b & 127) * mult
        if not b & 128:
            break
        mult *= 128
    return first, await r.readexactly(n)


class Stats:
    def __init__(self):
        self.answered = []  # (time answered, latency s)
        self.errors = 0


async def device(i, port, stop, stats, interval, ready):
    dk = "d%05d" % i
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(connect_packet(dk))
        kind, body = await asyncio.wait_for(read_packet(r), 20)
        if kind >> 4 != 2 or body[1] != 0:
            stats.errors += 1
            return
    except Exception:
        stats.errors += 1
        return
    ready.append(i)
    topic = "/sys/%s/%s/thing/measurepoint/post" % (PK, dk)
    sent = {}
    pid = 0
    got = asyncio.Event()

    async def reader():
        while True:
            kind, body = await read_packet(r)
            t = kind >> 4
            if t == 3:  # PUBLISH: a reply
                tl = int.from_bytes(body[:2], "big")
                off = 2 + tl
                qos = (kind >> 1) & 3
                if qos:
                    w.write(packet(0x40, body[off:off + 2]))
                    off += 2
                try:
                    rid = json.loads(body[off:])["id"]
                except Exception:
                    continue
                t0 = sent.pop(rid, None)
                if t0 is not None:
                    stats.answered.append((time.monotonic(), time.monotonic() - t0))
                    got.set()

    task = asyncio.create_task(reader())
    try:
        await asyncio.sleep(random.random() * max(interval, 0.01))
        n = 0
        while not stop.is_set():
            n += 1
            pid = pid % 65535 + 1
            rid = str(n)
            body = json.dumps({"id": rid, "version": "1.0", "method": "thing.measurepoint.post",
                               "params": {"measurepoints": {"temp": round(20 + random.random() * 5, 2), "power": n}}}).encode()
            sent[rid] = time.monotonic()
            got.clear()
            w.write(packet(0x32, s(topic) + pid.to_bytes(2, "big") + body))
            if interval > 0:
                await asyncio.sleep(interval)
            else:
                try:
                    await asyncio.wait_for(got.wait(), 10)
                except asyncio.TimeoutError:
                    stats.errors += 1
            if len(sent) > 100:
                sent.clear()
    except Exception:
        stats.errors += 1
    finally:
        task.cancel()
        w.close()


async def sse(port, counters, read=True):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(("GET /console/api/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n" % port).encode())
    if not read:
        await asyncio.sleep(3600)
    while True:
        chunk = await r.read(65536)
        if not chunk:
            return
        counters["bytes"] += len(chunk)
        counters["views"] += chunk.count(b"event: device")


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / ticks
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return cpu, rss


async def run(args, mode):
    console_open = mode == "open"
    d = tempfile.mkdtemp(prefix="bench-console-")
    reg = os.path.join(d, "registry.toml")
    with open(reg, "w") as f:
        f.write(registry(args.devices))
    serve = subprocess.Popen([args.bin, "serve", "--registry", reg, "--mqtt", "127.0.0.1:0", "--http", "off",
                              "--coap", "off", "--console", "off" if mode == "off" else "127.0.0.1:0", "--quiet",
                              "--connack-delay-ms", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = json.loads(serve.stdout.readline())
    # Drain stdout (the event lines) as a reader of serve's output would.
    drain = asyncio.get_running_loop().run_in_executor(None, lambda: [None for _ in serve.stdout])
    mqtt_port = int(first["mqtt"].rsplit(":", 1)[1])
    console_port = int(first["console"].rstrip("/").rsplit(":", 1)[1]) if "console" in first else None
    stats, stop, ready = Stats(), asyncio.Event(), []
    counters = {"bytes": 0, "views": 0}
    streams = []
    if console_open:
        streams = [asyncio.create_task(sse(console_port, counters)), asyncio.create_task(sse(console_port, counters, read=False))]
    tasks = []
    for i in range(args.devices):
        tasks.append(asyncio.create_task(device(i, mqtt_port, stop, stats, args.interval, ready)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    t_start = time.monotonic()
    while len(ready) + stats.errors < args.devices and time.monotonic() - t_start < 60:
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # every device posting
    cpu0, _ = proc_stat(serve.pid)
    seen0 = dict(counters)
    w0 = time.monotonic()
    peak = 0
    while time.monotonic() - w0 < args.seconds:
        await asyncio.sleep(1)
        _, rss = proc_stat(serve.pid)
        peak = max(peak, rss)
    w1 = time.monotonic()
    cpu1, rss_end = proc_stat(serve.pid)
    seen = {k: counters[k] - seen0[k] for k in counters}
    stop.set()
    await asyncio.sleep(0.5)
    for t in tasks + streams:
        t.cancel()
    serve.terminate()
    serve.wait(10)
    drain.cancel()
    window = [lat for (t, lat) in stats.answered if w0 <= t < w1]
    lat = sorted(window) or [0.0]
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return {
        "console": mode,
        "devices_logged_in": len(ready),
        "posts_per_s": round(len(window) / (w1 - w0), 1),
        "p50_ms": round(q(0.50), 2), "p99_ms": round(q(0.99), 2),
        "serve_cpu_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 1),
        "rss_peak_mb": round(peak / 1024, 1), "rss_end_mb": round(rss_end / 1024, 1),
        "errors": stats.errors,
        "stream_bytes_per_s": round(seen["bytes"] / (w1 - w0)) if console_open else None,
        "stream_views_per_s": round(seen["views"] / (w1 - w0), 1) if console_open else None,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/enos-connect")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    rows = []
    for _ in range(args.rounds):
        for mode in ("off", "idle", "open"):
            r = asyncio.run(run(args, mode))
            print(json.dumps(r), flush=True)
            rows.append(r)
    med = lambda mode, k: statistics.median(r[k] for r in rows if r["console"] == mode)
    off, on = med("off", "posts_per_s"), med("open", "posts_per_s")
    print(json.dumps({"devices": args.devices, "interval_s": args.interval, "posts_per_s_console_off": off,
                      "posts_per_s_console_open": on, "ratio": round(on / off, 3) if off else None,
                      "cpu_pct_off": med("off", "serve_cpu_pct"), "cpu_pct_open": med("open", "serve_cpu_pct"),
                      "rss_peak_mb_off": med("off", "rss_peak_mb"), "rss_peak_mb_open": med("open", "rss_peak_mb")}))


if __name__ == "__main__":
    sys.exit(main())
