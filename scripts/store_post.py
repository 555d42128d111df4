#!/usr/bin/env python3
"""Post measure point values to `serve` as fast as it acknowledges them, each with a time of its
own, so every value is a row of the history: the load of scripts/store-size.sh.

One MQTT 3.1.1 connection (EnOS securemode 2, the device secret from ENOS_DEVICE_SECRET), one
`thing.measurepoint.post.batch` after another, each a list of items for the device itself
(a time each, POINTS points an item), at most WINDOW unanswered at once. Every reply must be
code 200. No MQTT library: the few packets MQTT needs, by hand, as scripts/fleet_asyncio.py.
Prints one JSON line: values posted and answered, seconds taken.

    ENOS_DEVICE_SECRET=... store_post.py HOST PORT PRODUCT_KEY DEVICE_KEY VALUES [POINTS]
"""

import hashlib
import json
import os
import random
import socket
import sys
import time

ITEMS = 200  # items per batch: about 40 KB, under serve's 64 KiB message bound
WINDOW = 8   # batches in flight


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


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self):
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + length:
                    first, body = self.buf[0], self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return first, body
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                sys.exit("store_post.py: serve closed the connection")
            self.buf += chunk


def main():
    host, port, pk, dk, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    points = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    secret = os.environ["ENOS_DEVICE_SECRET"]
    c = Conn(host, port)
    ts = int(time.time() * 1000)
    sign = hashlib.sha256(
        f"clientId{dk}deviceKey{dk}productKey{pk}timestamp{ts}{secret}".encode()
    ).hexdigest().upper()
    cid = f"{dk}|securemode=2,signmethod=sha256,timestamp={ts}|"
    var = s("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    c.send(packet(0x10, var + s(cid) + s(f"{dk}&{pk}") + s(sign)))
    first, body = c.read()
    if first >> 4 != 2 or body[1] != 0:
        sys.exit(f"store_post.py: login refused (CONNACK {body[1]})")
    topic = f"/sys/{pk}/{dk}/thing/measurepoint/post/batch"
    # Times one second apart, ending now: within the default retention's seven days.
    items_total = -(-total // points)
    start_ms = ts - items_total * 1000
    rng = random.Random(29)
    pkid, sent_items, answered, in_flight, n = 0, 0, 0, 0, 0
    began = time.monotonic()
    while answered < items_total:
        while in_flight < WINDOW and sent_items < items_total:
            batch = []
            for _ in range(min(ITEMS, items_total - sent_items)):
                t = start_ms + sent_items * 1000
                mp = {f"p{j}": round(20 + rng.random() * 5, 1) for j in range(points)}
                batch.append({"productKey": pk, "deviceKey": dk, "time": t, "measurepoints": mp})
                sent_items += 1
            n += 1
            pkid = pkid % 65535 + 1
            payload = json.dumps({"id": str(n), "version": "1.0", "method": "thing.measurepoint.post.batch",
                                  "params": batch}, separators=(",", ":")).encode()
            c.send(packet(0x32, s(topic) + pkid.to_bytes(2, "big") + payload))
            in_flight += 1
        first, body = c.read()
        if first >> 4 != 3:
            continue  # PUBACK and the like
        tlen = int.from_bytes(body[:2], "big")
        pos = 2 + tlen + (2 if first & 0x06 else 0)
        reply = json.loads(body[pos:])
        if reply.get("code") != 200:
            sys.exit(f"store_post.py: serve answered {reply}")
        in_flight -= 1
        answered += min(ITEMS, items_total - (answered))
    took = time.monotonic() - began
    c.send(bytes([0xE0, 0]))
    print(json.dumps({"values": items_total * points, "seconds": round(took, 2)}))


main()
