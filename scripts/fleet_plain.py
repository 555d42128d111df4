#!/usr/bin/env python3
"""A plain MQTT fleet, as a user measures a broker's cost per connection: N anonymous clients
(MQTT 3.1.1, clean session, no subscription), each publishing a small payload at QoS 1 every
EVERY seconds for HOLD seconds from its own connect, and waiting for the PUBACK. Connects from
16 loopback addresses (as `probe --fleet` does) at RATE connects a second. Prints one JSON line:
connected, offered, acked, and ramp_s (seconds from start until the last client was in).

    fleet_plain.py HOST PORT N EVERY HOLD [RATE]
"""
import asyncio, json, struct, sys, time


def varlen(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def text(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


host, port, n, every, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 3000.0
counts = {"connected": 0, "offered": 0, "acked": 0}
last_in = [0.0]
start = time.monotonic()


async def device(i):
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(f"127.0.0.{1 + i % 16}", 0)), 20)
        cid = f"plain-{i}"
        body = text("MQTT") + bytes([4, 2]) + struct.pack(">H", 60) + text(cid)
        w.write(b"\x10" + varlen(len(body)) + body)
        ack = await asyncio.wait_for(r.readexactly(4), 20)
        if ack[3] != 0:
            return
        counts["connected"] += 1
        last_in[0] = time.monotonic() - start
        end = time.monotonic() + hold
        topic, pid = text(f"fleet/{cid}/temp"), 1
        while time.monotonic() < end:
            b = topic + struct.pack(">H", pid) + b'{"temp":21.5}'
            w.write(b"\x32" + varlen(len(b)) + b)
            counts["offered"] += 1
            await asyncio.wait_for(r.readexactly(4), 20)
            counts["acked"] += 1
            pid = pid % 65535 + 1
            await asyncio.sleep(max(0.0, min(every, end - time.monotonic())))
        w.write(b"\xe0\x00")
        await w.drain()
        w.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        pass


async def main():
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(device(i)))
        wait = start + (i + 1) / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    await asyncio.gather(*tasks)


asyncio.run(main())
print(json.dumps({**counts, "devices": n, "ramp_s": round(last_in[0], 3)}))
