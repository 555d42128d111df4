"""A device built on the official EnOS Python device SDK (enos-mqtt-sdk-python 0.1.1 with
paho-mqtt 1.6.1), for `enos-connect device-test --run`: what a firmware written on the SDK does,
with the SDK's own defaults wherever it has one (auto-reconnect on, through paho, between 1 and
60 s; keep-alive 60 s; sub-devices logged in again after a reconnect).

It logs in (over TLS when ENOS_CONNECT_MQTTS_URL is set, verifying the server against the CA in
ENOS_CONNECT_CA), reports its firmware version, logs in the sub-device ENOS_TEST_SUBDEVICE
(`PK/DK`, secret ENOS_SUBDEVICE_SECRET), measures the point `temp` every second and posts it with its time, keeps the points it
measures while disconnected (or whose post timed out) and sends them after the reconnect with
MeasurepointResumeRequest, answers measure point set and get and every
service invocation, and answers an OTA upgrade, then reports progress 0, 50, 100 and the new
version. It runs until it is stopped (SIGTERM). Never prints a secret.

Environment (device-test --run sets the first ones): ENOS_CONNECT_MQTT_URL or
ENOS_CONNECT_MQTTS_URL, ENOS_PRODUCT_KEY, ENOS_DEVICE_KEY; ENOS_DEVICE_SECRET,
ENOS_CONNECT_CA (for MQTTS), ENOS_TEST_SUBDEVICE and ENOS_SUBDEVICE_SECRET (optional).
"""
import collections
import os
import sys
import threading
import time

from enos.core.MqttClient import MqttClient
from enos.message.downstream.ota.OtaUpgradeCommand import OtaUpgradeCommand
from enos.message.downstream.ota.OtaUpgradeReply import OtaUpgradeReply
from enos.message.downstream.tsl.MeasurepointGetCommand import MeasurepointGetCommand
from enos.message.downstream.tsl.MeasurepointGetReply import MeasurepointGetReply
from enos.message.downstream.tsl.MeasurepointSetCommand import MeasurepointSetCommand
from enos.message.downstream.tsl.MeasurepointSetReply import MeasurepointSetReply
from enos.message.downstream.tsl.ServiceInvocationCommand import ServiceInvocationCommand
from enos.message.downstream.tsl.ServiceInvocationReply import ServiceInvocationReply
from enos.message.upstream.ota.OtaProgressReportRequest import OtaProgressReportRequest
from enos.message.upstream.ota.OtaVersionReportRequest import OtaVersionReportRequest
from enos.message.upstream.resume.MeasurepointResumeRequest import MeasurepointResumeRequest
from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest


def log(text):
    print("sdk_device: " + text, flush=True)


env = os.environ.get
url = env("ENOS_CONNECT_MQTTS_URL") or env("ENOS_CONNECT_MQTT_URL")
if not url:
    sys.exit("sdk_device: no ENOS_CONNECT_MQTT_URL or ENOS_CONNECT_MQTTS_URL")
pk, dk, secret = env("ENOS_PRODUCT_KEY"), env("ENOS_DEVICE_KEY"), env("ENOS_DEVICE_SECRET")
# The SDK's Profile reads scheme://host:port; TLS is its ssl context, not the scheme.
client = MqttClient(uri="tcp://" + url.split("://", 1)[1], product_key=pk, device_key=dk, device_secret=secret)
profile = client.get_profile()
profile.set_operation_timeout(10)
if env("ENOS_CONNECT_MQTTS_URL"):
    # Verifies the server's chain against the CA (CERT_REQUIRED), no client certificate.
    profile.set_ssl_context(env("ENOS_CONNECT_CA"), None, None)

version = {"running": "1.0"}


def on_set(msg, args):
    return MeasurepointSetReply.builder().set_code(200).set_message("set").build()


def on_get(msg, args):
    return MeasurepointGetReply.builder().set_code(200).add_measureponit("temp", 21.5).build()  # sic: the SDK's spelling


def on_service(msg, args):
    return ServiceInvocationReply.builder().set_code(200).build()


def upgrade(target):
    time.sleep(0.2)
    for step in (0, 50, 100):
        client.publish(OtaProgressReportRequest.builder().set_step(str(step)).set_desc("upgrading").build())
        time.sleep(0.1)
    version["running"] = target
    client.publish(OtaVersionReportRequest.builder().set_version(target).build())
    log("upgraded to " + target)


def on_ota(msg, args):
    target = msg.get_firmware_info().version
    threading.Thread(target=upgrade, args=(target,), daemon=True).start()
    return OtaUpgradeReply.builder().set_code(200).build()


client.register_arrived_message_handler(MeasurepointSetCommand.get_class(), on_set)
client.register_arrived_message_handler(MeasurepointGetCommand.get_class(), on_get)
client.register_arrived_message_handler(ServiceInvocationCommand.get_class(), on_service)
client.register_arrived_message_handler(OtaUpgradeCommand.get_class(), on_ota)
client.connect()
# A refused first login is retried by paho, backing off: wait for it (device-test bounds it too).
deadline = time.time() + 120
while not client.is_connected():
    if time.time() > deadline:
        sys.exit("sdk_device: not connected after 120 s")
    time.sleep(0.2)
log("connected")
client.publish(OtaVersionReportRequest.builder().set_version(version["running"]).build())
sub = env("ENOS_TEST_SUBDEVICE")
if sub and "/" in sub:
    sub_pk, sub_dk = sub.split("/", 1)
    r = client.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, env("ENOS_SUBDEVICE_SECRET")).build())
    log("sub-device login code %s" % (r.get_code() if r is not None else None))

# The firmware measures on its own clock, whatever the connection does (the SDK's publish is
# synchronous and may wait for its time-out): a point measured while disconnected is sent after
# the reconnect with MeasurepointResumeRequest and its time.
points = collections.deque(maxlen=1000)
lock = threading.Lock()


def measure():
    n = 0
    while True:
        time.sleep(1)
        n += 1
        with lock:
            points.append(("post" if client.is_connected() else "resume", int(time.time() * 1000), 20 + (n % 10) / 2))


threading.Thread(target=measure, daemon=True).start()
while True:
    with lock:
        item = points.popleft() if points and client.is_connected() else None
    if item is None:
        time.sleep(0.1)
        continue
    kind, t, v = item
    try:
        if kind == "post":
            client.publish(MeasurepointPostRequest.builder().add_measurepoint("temp", v).set_timestamp(t).build())
        else:
            client.publish(MeasurepointResumeRequest.builder().add_measure_point("temp", v).set_timestamp(t).build())
    except Exception as e:  # the SDK raises on a time-out: the point goes again, as measured
        with lock:
            points.appendleft(("resume", t, v))
        log("%s failed: %s" % (kind, type(e).__name__))
