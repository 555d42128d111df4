"""MQTT 3.1.1 cases against `enos-connect serve` through paho-mqtt 1.6, a generic client: a second
connection with the same client id takes the first over (MQTT-3.1.4-2), MQTT 3.1 and MQTT 5 are
refused with CONNACK 0x01 (MQTT-3.1.2-2), and a QoS 2 request is answered once. Run by
tests/it/mqtt_spec.rs; the EnOS login comes in MQTT_CLIENT_ID, MQTT_USERNAME, MQTT_PASSWORD (never
printed). Prints one `ok: ...` per check and exits 1 at the first that fails.

usage: mqtt_spec_check.py PORT
"""
import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

port = int(sys.argv[1])
cid, user, password = os.environ["MQTT_CLIENT_ID"], os.environ["MQTT_USERNAME"], os.environ["MQTT_PASSWORD"]
pk, dk = user.split("&")[1], user.split("&")[0]


def fail(what):
    print("FAILED: " + what)
    sys.exit(1)


def client(protocol=mqtt.MQTTv311):
    state = {"rc": None, "disconnected": threading.Event(), "connected": threading.Event(), "messages": []}
    c = mqtt.Client(client_id=cid, protocol=protocol)
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, properties=None):
        state["rc"] = rc
        state["connected"].set()

    def on_disconnect(client, userdata, rc, properties=None):
        state["disconnected"].set()

    def on_message(client, userdata, msg):
        state["messages"].append(msg.topic)

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_message = on_message
    return c, state


# Takeover: the older connection is closed when a newer one logs in with its client id.
a, sa = client()
a.connect("127.0.0.1", port, keepalive=30)
a.loop_start()
if not sa["connected"].wait(5) or sa["rc"] != 0:
    fail("the first connection: rc %r" % sa["rc"])
b, sb = client()
b.connect("127.0.0.1", port, keepalive=30)
b.loop_start()
if not sb["connected"].wait(5) or sb["rc"] != 0:
    fail("the second connection: rc %r" % sb["rc"])
if not sa["disconnected"].wait(5):
    fail("the first connection was not closed")
a.loop_stop()
time.sleep(0.3)
if sb["disconnected"].is_set() or not b.is_connected():
    fail("the second connection did not stay")
print("ok: takeover: the first connection closed, the second stays")

# QoS 2: one request, one reply.
topic = "/sys/%s/%s/thing/measurepoint/post" % (pk, dk)
b.subscribe(topic + "_reply", qos=1)
time.sleep(0.3)
info = b.publish(topic, json.dumps({"id": "p2", "version": "1.0", "method": "thing.measurepoint.post",
                                    "params": {"measurepoints": {"temp": 3}}}), qos=2)
info.wait_for_publish(5)
time.sleep(1.0)
replies = [t for t in sb["messages"] if t == topic + "_reply"]
if len(replies) != 1:
    fail("QoS 2: %d replies" % len(replies))
print("ok: QoS 2 publish answered once")
b.disconnect()
b.loop_stop()

# MQTT 3.1 (MQIsdp, level 3): CONNACK 1, "unacceptable protocol version".
c3, s3 = client(mqtt.MQTTv31)
c3.connect("127.0.0.1", port, keepalive=30)
c3.loop_start()
if not s3["connected"].wait(5) or s3["rc"] != 1:
    fail("MQTT 3.1: rc %r" % s3["rc"])
c3.loop_stop()
print("ok: MQTT 3.1 refused with CONNACK 1")

# MQTT 5 (level 5): refused, never connected (paho 1.6 reads the 3.1.1 CONNACK's code 1 as a
# failure or drops the connection; either way not a session).
c5, s5 = client(mqtt.MQTTv5)
try:
    c5.connect("127.0.0.1", port, keepalive=30)
    c5.loop_start()
    s5["connected"].wait(3)
    time.sleep(0.3)
    c5.loop_stop()
except Exception as e:  # a refusal paho cannot parse is a refusal too
    s5["rc"] = "error: %s" % type(e).__name__
if s5["rc"] == 0 or c5.is_connected():
    fail("MQTT 5 connected: rc %r" % s5["rc"])
print("ok: MQTT 5 refused (paho: %s)" % s5["rc"])
print("all checks passed")
