"""The official EnOS Python device SDK (enos-mqtt-sdk-python 0.1.1 with paho-mqtt 1.6.x) against
`enos-connect serve`. Run by tests/it/sdk.rs; prints one `ok: ...` line per check and exits 1
at the first that fails. Never prints a secret.

usage: sdk_check.py PORT PK DK DEVICE_SECRET PRODUCT_SECRET DYN_DK SUB_PK SUB_DK SUB_SECRET

Notes from reading the SDK: `enos.sample.SampleHelper` is not imported (it sets a zh_CN locale at
import); a refused CONNACK does not raise, so the wrong-secret check connects asynchronously and
looks at is_connected(); close() must not be called while the activation callback runs.
"""
import sys
import threading
import time

from enos.core.MqttClient import MqttClient
from enos.core.internal.Profile import Profile
from enos.core.login.DynamicActivationLogin import DynamicActivationLogin
from enos.core.message.IConnectCallback import IConnectCallback
from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

(port, pk, dk, device_secret, product_secret, dyn_dk, sub_pk, sub_dk, sub_secret) = sys.argv[1:10]
url = "tcp://127.0.0.1:" + port


def fail(what):
    print("FAILED: " + what)
    sys.exit(1)


def client(key, secret):
    c = MqttClient(uri=url, product_key=pk, device_key=key, device_secret=secret)
    c.get_profile().set_auto_reconnect(False)
    c.get_profile().set_operation_timeout(5)
    return c


def post(c, point, value):
    return c.publish(MeasurepointPostRequest.builder().add_measurepoint(point, value).build())


# 1. A static login, a measure point in the model (200) and one outside it (1204).
c = client(dk, device_secret)
c.connect()
if not c.is_connected():
    fail("static login")
print("ok: static login")
r = post(c, "temp", 21.5)
if r.get_code() != 200 or not r.is_success():
    fail("measure point post: code %r" % r.get_code())
print("ok: measure point post code 200")
r = post(c, "humidity", 40)
if r.get_code() != 1204:
    fail("point outside the model: code %r" % r.get_code())
print("ok: point outside the model code 1204: %s" % r.get_message())

# 2. A sub-device through this gateway connection.
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, sub_secret).build())
if r.get_code() != 200:
    fail("sub-device login: code %r" % r.get_code())
data = r.get_data() or {}
if data.get("deviceKey") != sub_dk:
    fail("sub-device login data: %r" % data)
print("ok: sub-device login code 200")
c.close()


# 3. A wrong secret does not connect (the SDK does not raise: it just is not connected).
class Quiet(IConnectCallback):
    def on_connect(self):
        pass

    def on_disconnect(self):
        pass

    def on_connect_failed(self):
        pass


bad = client(dk, "not-the-secret")
bad.connect(callback=Quiet())
time.sleep(1.5)
if bad.is_connected():
    fail("a wrong secret connected")
bad.close()
print("ok: wrong secret refused")

# 4. Dynamic activation with the product secret, then a login with the pushed secret.
arrived = threading.Event()
pushed = {}


def on_activate(secret):
    pushed["secret"] = secret
    arrived.set()


dyn = MqttClient(profile=Profile.create_instance(DynamicActivationLogin(url, pk, product_secret, dyn_dk)))
dyn.get_profile().set_auto_reconnect(False)
dyn.on_device_dynamic_active = on_activate
dyn.connect()
if not arrived.wait(10):
    fail("no device secret pushed")
time.sleep(0.5)  # the SDK answers info_reply after the callback returns
dyn.close()
print("ok: activated (a %d-character secret arrived)" % len(pushed["secret"]))
again = client(dyn_dk, pushed["secret"])
again.connect()
if not again.is_connected():
    fail("login with the pushed secret")
r = post(again, "temp", 1)
if r.get_code() != 200:
    fail("post after activation: code %r" % r.get_code())
again.close()
print("ok: logged in with the pushed secret and posted")
print("all checks passed")
