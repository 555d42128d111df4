#!/usr/bin/env python3
"""A plain Python asyncio fleet client: the yardstick for `probe --fleet`'s CPU per message.

It does what `probe URL --fleet --devices N` does, by hand on asyncio streams: each device
connects, logs in once with its EnOS login (securemode 3, the product secret from
ENOS_PRODUCT_SECRET, its own client id), answers the activation push, subscribes to its reply
topic, posts a measure point at QoS 1 every EVERY seconds for HOLD seconds, and counts the
PUBACKs and EnOS replies. It prints one JSON line of counts. No MQTT library: the packets are
the few bytes MQTT 3.1.1 needs, so the comparison is the runtime, not a library's extras.

    ENOS_PRODUCT_SECRET=... fleet_asyncio.py HOST PORT PRODUCT_KEY N EVERY HOLD [RATE]
"""

import asyncio
import hashlib
import json
import os
import sys
import time


def varlen(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def s(text):
    b = text.encode()
    return len(b).to_bytes(2, "big") + b


def packet(kind, body):
    return bytes([kind]) + varlen(len(body)) + body


def connect(pk, dk, secret, ts):
    sign = hashlib.sha256(
        f"clientId{dk}deviceKey{dk}productKey{pk}timestamp{ts}{secret}".encode()
    ).hexdigest().upper()
    cid = f"{dk}|securemode=3,signmethod=sha256,timestamp={ts}|"
    var = s("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    return packet(0x10, var + s(cid) + s(f"{dk}&{pk}") + s(sign))


async def read_packet(reader):
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, await reader.readexactly(length)


stats = {"connected": 0, "failed": 0, "offered": 0, "acked": 0, "answered": 0, "held": 0}


async def device(host, port, pk, dk, secret, every, hold, start, i):
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    # As probe --fleet does against a loopback server: 16 local addresses, so the kernel's
    # search for a free local port stays short.
    local = (f"127.0.0.{i % 16 + 1}", 0) if host.startswith("127.") else None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), 10)
        writer.write(connect(pk, dk, secret, int(time.time() * 1000)))
        first, body = await asyncio.wait_for(read_packet(reader), 10)
        if first >> 4 != 2 or body[1] != 0:
            stats["failed"] += 1
            writer.close()
            return
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        stats["failed"] += 1
        return
    stats["connected"] += 1
    topic = f"/sys/{pk}/{dk}/thing/measurepoint/post"
    reply = topic + "_reply"
    activate = f"/ext/session/{pk}/{dk}/thing/activate/info"
    writer.write(packet(0x82, (1).to_bytes(2, "big") + s(reply) + b"\x00"))
    end = time.monotonic() + hold
    pending = {}

    async def reader_loop():
        while True:
            first, body = await read_packet(reader)
            kind = first >> 4
            if kind == 4:
                stats["acked"] += 1
            elif kind == 3:
                tlen = int.from_bytes(body[:2], "big")
                t = body[2 : 2 + tlen].decode()
                rest = body[2 + tlen :]
                if (first >> 1) & 3:
                    pid, rest = rest[:2], rest[2:]
                    writer.write(packet(0x40, pid))
                msg = json.loads(rest)
                if t == reply and pending.pop(str(msg.get("id")), None) is not None:
                    stats["answered"] += 1
                elif t == activate:
                    ack = json.dumps({"id": msg.get("id"), "code": 200, "data": {}}).encode()
                    writer.write(packet(0x30, s(activate + "_reply") + ack))

    task = asyncio.create_task(reader_loop())
    n = 0
    try:
        while time.monotonic() < end:
            n += 1
            body = json.dumps(
                {
                    "id": str(n),
                    "version": "1.0",
                    "method": "thing.measurepoint.post",
                    "params": {"measurepoints": {"temp": 21.5}, "time": int(time.time() * 1000)},
                }
            ).encode()
            pending[str(n)] = time.monotonic()
            writer.write(packet(0x32, s(topic) + (n % 65535 + 2).to_bytes(2, "big") + body))
            stats["offered"] += 1
            await asyncio.sleep(every)
        await asyncio.sleep(min(2.0, every))
        stats["held"] += 1
    finally:
        task.cancel()
        writer.write(b"\xe0\x00")
        writer.close()


async def main():
    host, port, pk = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n, every, hold = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    rate = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    secret = os.environ["ENOS_PRODUCT_SECRET"]
    t0 = time.monotonic()
    await asyncio.gather(
        *(
            device(host, port, pk, f"fleet-{i}", secret, every, hold, t0 + (i / rate if rate else 0), i)
            for i in range(1, n + 1)
        ),
        return_exceptions=True,
    )
    print(json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
