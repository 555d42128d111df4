"""The official EnOS Python device SDK (enos-mqtt-sdk-python 0.1.1 with paho-mqtt 1.6.x) against
`enos-connect serve`: every request class and command class of the SDK, each checked by what the
SDK gets back and by reading serve's device twin (GET /twin/devices/{pk}/{dk}). Run by
tests/it/sdk.rs; prints one `ok: ...` line per check and exits 1 at the first that fails. Never
prints a secret.

usage: sdk_check.py MQTT_PORT HTTP_PORT PK DK DEVICE_SECRET PRODUCT_SECRET DYN_DK SUB_PK SUB_DK SUB_SECRET

Notes from reading the SDK: `enos.sample.SampleHelper` is not imported (it sets a zh_CN locale at
import); a refused CONNACK does not raise, so the wrong-secret check connects asynchronously and
looks at is_connected(); close() must not be called while the activation callback runs.
SDK 0.1.1 bugs serve tolerates, as EnOS must: EventPostRequest sends the method
`thing.event.%s.post{id}`; IntAttributePostRequest sends an empty params list whenever it has
attributes (`if not self.__attributes`), so only its reply can be checked.
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from enos.core.MqttClient import MqttClient
from enos.core.internal.Profile import Profile
from enos.core.login.DynamicActivationLogin import DynamicActivationLogin
from enos.core.login.MessageIntegrationLogin import MessageIntegrationLogin
from enos.core.message.IConnectCallback import IConnectCallback
from enos.message.downstream.device.SubDeviceDisableCommand import SubDeviceDisableCommand
from enos.message.downstream.device.SubDeviceDisableReply import SubDeviceDisableReply
from enos.message.downstream.device.SubDeviceEnableCommand import SubDeviceEnableCommand
from enos.message.downstream.device.SubDeviceEnableReply import SubDeviceEnableReply
from enos.message.downstream.device.SubDeviceDeleteCommand import SubDeviceDeleteCommand
from enos.message.downstream.device.SubDeviceDeleteReply import SubDeviceDeleteReply
from enos.message.downstream.ota.OtaUpgradeCommand import OtaUpgradeCommand
from enos.message.downstream.ota.OtaUpgradeReply import OtaUpgradeReply
from enos.message.downstream.tsl.MeasurepointGetCommand import MeasurepointGetCommand
from enos.message.downstream.tsl.MeasurepointGetReply import MeasurepointGetReply
from enos.message.downstream.tsl.MeasurepointSetCommand import MeasurepointSetCommand
from enos.message.downstream.tsl.MeasurepointSetReply import MeasurepointSetReply
from enos.message.downstream.tsl.ModelDownRawCommand import ModelDownRawCommand
from enos.message.downstream.tsl.ModelDownRawReply import ModelDownRawReply
from enos.message.downstream.tsl.ServiceInvocationCommand import ServiceInvocationCommand
from enos.message.downstream.tsl.ServiceInvocationReply import ServiceInvocationReply
from enos.message.upstream.integration.IntAttributePostRequest import IntAttributePostRequest
from enos.message.upstream.integration.IntEventPostRequest import IntEventPostRequest
from enos.message.upstream.integration.IntMeaturepointPostRequest import IntMeaturepointPostRequest
from enos.message.upstream.integration.IntModelUpRawRequest import IntModelUpRawRequest
from enos.message.upstream.ota.OtaGetVersionRequest import OtaGetVersionRequest
from enos.message.upstream.ota.OtaProgressReportRequest import OtaProgressReportRequest
from enos.message.upstream.ota.OtaVersionReportRequest import OtaVersionReportRequest
from enos.message.upstream.register.DeviceRegisterRequest import DeviceRegisterRequest
from enos.message.upstream.resume.MeasurepointResumeBatchRequest import MeasurepointResumeBatchRequest
from enos.message.upstream.resume.MeasurepointResumeRequest import MeasurepointResumeRequest
from enos.message.upstream.status.SubDeviceLoginBatchRequest import SubDeviceLoginBatchRequest
from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
from enos.message.upstream.status.SubDeviceLogoutRequest import SubDeviceLogoutRequest
from enos.message.upstream.tag.TagDeleteRequest import TagDeleteRequest
from enos.message.upstream.tag.TagQueryRequest import TagQueryRequest
from enos.message.upstream.tag.TagUpdateRequest import TagUpdateRequest
from enos.message.upstream.topo.SubDeviceInfo import SubDeviceInfo
from enos.message.upstream.topo.TopoAddRequest import TopoAddRequest
from enos.message.upstream.topo.TopoDeleteRequest import TopoDeleteRequest
from enos.message.upstream.topo.TopoGetRequest import TopoGetRequest
from enos.message.upstream.tsl.AttributeDeleteRequest import AttributeDeleteRequest
from enos.message.upstream.tsl.AttributeQueryRequest import AttributeQueryRequest
from enos.message.upstream.tsl.AttributeUpdateRequest import AttributeUpdateRequest
from enos.message.upstream.tsl.EventPostRequest import EventPostRequest
from enos.message.upstream.tsl.MeasurepointPostBatchRequest import MeasurepointPostBatchRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest
from enos.message.upstream.tsl.ModelUpRawRequest import ModelUpRawRequest
from enos.message.upstream.tsl.TslTemplateGetRequest import TslTemplateGetRequest

(port, http_port, pk, dk, device_secret, product_secret, dyn_dk, sub_pk, sub_dk, sub_secret) = sys.argv[1:11]
url = "tcp://127.0.0.1:" + port
twin_url = "http://127.0.0.1:" + http_port


def fail(what):
    print("FAILED: " + what)
    sys.exit(1)


def check(ok, what, detail=""):
    if not ok:
        fail("%s %s" % (what, detail))
    print("ok: " + what)


def twin(p, d):
    with urllib.request.urlopen("%s/twin/devices/%s/%s" % (twin_url, p, d), timeout=5) as r:
        return json.loads(r.read())


def command(p, d, body, timeout=5):
    req = urllib.request.Request(
        "%s/twin/commands/%s/%s?timeout=%d" % (twin_url, p, d, timeout),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout + 5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def client(key, secret):
    c = MqttClient(uri=url, product_key=pk, device_key=key, device_secret=secret)
    c.get_profile().set_auto_reconnect(False)
    c.get_profile().set_operation_timeout(5)
    return c


def post(c, point, value):
    return c.publish(MeasurepointPostRequest.builder().add_measurepoint(point, value).build())


def code_of(r):
    return int(r.get_code()) if r is not None else None


# 1. A static login, a measure point in the model (200) and one outside it (1204).
c = client(dk, device_secret)


def on_set(msg, args):
    return MeasurepointSetReply.builder().set_code(200).set_message("set").build()


def on_get(msg, args):
    return MeasurepointGetReply.builder().set_code(200).add_measureponit("temp", 7).build()  # sic: the SDK's spelling


def on_service(msg, args):
    return ServiceInvocationReply.builder().set_code(200).add_output_data("ok", 1).build()


def on_down_raw(msg, args):
    return ModelDownRawReply(payload=b"raw-reply:" + msg.get_payload())


def on_ota(msg, args):
    firmware = msg.get_firmware_info()
    ota_seen["version"] = firmware.version
    return OtaUpgradeReply.builder().set_code(200).build()


def on_sub(kind):
    def handler(msg, args):
        sub_commands.append(kind)
        reply = {"disable": SubDeviceDisableReply, "enable": SubDeviceEnableReply, "delete": SubDeviceDeleteReply}[kind]
        return reply.builder().set_code(200).build()
    return handler


ota_seen = {}
sub_commands = []
c.register_arrived_message_handler(MeasurepointSetCommand.get_class(), on_set)
c.register_arrived_message_handler(MeasurepointGetCommand.get_class(), on_get)
c.register_arrived_message_handler(ServiceInvocationCommand.get_class(), on_service)
c.register_arrived_message_handler(ModelDownRawCommand.get_class(), on_down_raw)
c.register_arrived_message_handler(OtaUpgradeCommand.get_class(), on_ota)
c.register_arrived_message_handler(SubDeviceDisableCommand.get_class(), on_sub("disable"))
c.register_arrived_message_handler(SubDeviceEnableCommand.get_class(), on_sub("enable"))
c.register_arrived_message_handler(SubDeviceDeleteCommand.get_class(), on_sub("delete"))
c.connect()
check(c.is_connected(), "static login")
check(twin(pk, dk)["status"] == "online", "twin: the device is online over mqtt", twin(pk, dk)["status"])
r = post(c, "temp", 21.5)
check(code_of(r) == 200 and r.is_success(), "measure point post code 200", code_of(r))
t = twin(pk, dk)
check(t["measurepoints"].get("temp", {}).get("value") == 21.5 and t["measurepoints"]["temp"]["time"] > 0,
      "twin: measure point value and time read back", t["measurepoints"])
r = post(c, "humidity", 40)
check(code_of(r) == 1204, "point outside the model code 1204", code_of(r))

# 2. Attributes and tags: update, query what was stored, delete, query again.
r = c.publish(AttributeUpdateRequest.builder().add_attribute("color", "red").add_attribute("size", 3).build())
check(code_of(r) == 200, "attribute update code 200", code_of(r))
r = c.publish(AttributeQueryRequest.builder().add_attribute("color").add_attribute("size").build())
check(code_of(r) == 200 and r.get_data() == {"color": "red", "size": 3}, "attribute query reads back", r.get_data())
r = c.publish(AttributeDeleteRequest.builder().delete_attribute("size").build())
check(code_of(r) == 200, "attribute delete code 200", code_of(r))
r = c.publish(AttributeQueryRequest.builder().query_all().build())
check(r.get_data() == {"color": "red"}, "attribute query after delete", r.get_data())
r = c.publish(TagUpdateRequest.builder().add_tag("site", "north").add_tag("floor", "2").build())
check(code_of(r) == 200, "tag update code 200", code_of(r))
r = c.publish(TagQueryRequest.builder().add_key("site").add_key("floor").build())
check(r.get_data() == {"site": "north", "floor": "2"}, "tag query reads back", r.get_data())
r = c.publish(TagDeleteRequest.builder().delete_tag_key("floor").build())
r = c.publish(TagQueryRequest.builder().query_all().build())
check(r.get_data() == {"site": "north"}, "tag query after delete", r.get_data())
check(twin(pk, dk)["tags"] == {"site": "north"}, "twin: tags")

# 3. Events (the SDK's own method form), resume, batch, resume batch.
r = c.publish(EventPostRequest.builder().set_event_identifier("overheat").add_value("level", 3).build())
check(code_of(r) == 200, "event post code 200 (the SDK's method thing.event.%s.post{id})", code_of(r))
events = twin(pk, dk)["events"]
check(any(e["event"] == "overheat" and e["values"] == {"level": 3} for e in events), "twin: the event", events)
old = int(time.time() * 1000) - 60000
r = c.publish(MeasurepointResumeRequest.builder().add_measure_point("on", 1).set_timestamp(old).build())
check(code_of(r) == 200, "measure point resume code 200", code_of(r))
check(twin(pk, dk)["measurepoints"]["on"]["time"] == old, "twin: the resumed point keeps its time")

# 4. Topology: get (seeded from the registry), sub-device login, batch, logout.
r = c.publish(TopoGetRequest.builder().build())
check(code_of(r) == 200 and {"productKey": sub_pk, "deviceKey": sub_dk} in (r.get_data() or []),
      "topo get lists the registry's sub-device", r.get_data())
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, sub_secret).build())
check(code_of(r) == 200 and (r.get_data() or {}).get("deviceKey") == sub_dk, "sub-device login code 200", r.get_data())
check(twin(sub_pk, sub_dk)["status"] == "online", "twin: the sub-device is online through its gateway")
batch = MeasurepointPostBatchRequest.builder().add_request(
    MeasurepointPostRequest.builder().set_product_key(pk).set_device_key(dk).add_measurepoint("temp", 30).build()
).add_request(
    MeasurepointPostRequest.builder().set_product_key(sub_pk).set_device_key(sub_dk).add_measurepoint("temp", 31).build()
).build()
r = c.publish(batch)
check(code_of(r) == 200, "measure point post batch code 200", code_of(r))
check(twin(sub_pk, sub_dk)["measurepoints"]["temp"]["value"] == 31, "twin: the batch reached the sub-device")
rbatch = MeasurepointResumeBatchRequest.builder().add_request(
    MeasurepointResumeRequest.builder().set_product_key(sub_pk).set_device_key(sub_dk).add_measure_point("on", 0).build()
).build()
r = c.publish(rbatch)
check(code_of(r) == 200, "measure point resume batch code 200", code_of(r))
r = c.publish(SubDeviceLoginBatchRequest.builder().add_sub_device_info(sub_pk, sub_dk, sub_secret).build())
check(code_of(r) == 200, "sub-device login batch code 200", code_of(r))
r = c.publish(SubDeviceLogoutRequest.builder().set_sub_product_key(sub_pk).set_sub_device_key(sub_dk).build())
check(code_of(r) == 200, "sub-device logout code 200", code_of(r))
check(twin(sub_pk, sub_dk)["status"] == "offline", "twin: the sub-device is offline after logout")

# 5. Registration: a new device with a fresh secret, added to the topology, logs in with it.
# (No device name: SDK 0.1.1 sends it as bytes, which json cannot encode on Python 3.)
r = c.publish(DeviceRegisterRequest.builder().add_register_information(pk, "reg1", None, "desc", "+08:00").build())
data = r.get_data() or []
check(code_of(r) == 200 and len(data) == 1 and data[0].get("deviceKey") == "reg1" and len(data[0].get("deviceSecret") or "") >= 16
      and data[0].get("assetId"), "device register returns productKey, deviceKey, deviceSecret, assetId")
reg_secret = data[0]["deviceSecret"]
r = c.publish(TopoAddRequest.builder().add_sub_device(SubDeviceInfo(pk, "reg1", reg_secret)).build())
check(code_of(r) == 200, "topo add (signed with the new secret) code 200", code_of(r))
r = c.publish(TopoGetRequest.builder().build())
check({"productKey": pk, "deviceKey": "reg1"} in (r.get_data() or []), "topo get lists the added device", r.get_data())
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(pk, "reg1", reg_secret).build())
check(code_of(r) == 200, "the registered device logs in as a sub-device", code_of(r))
r = c.publish(TopoDeleteRequest.builder().delete_sub_device(pk, "reg1").build())
check(code_of(r) == 200, "topo delete code 200", code_of(r))
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(pk, "reg1", reg_secret).build())
check(code_of(r) == 740, "after topo delete the login gets 740", code_of(r))

# 6. The thing model, raw data, OTA.
r = c.publish(TslTemplateGetRequest.builder().build())
check(code_of(r) == 200 and "temp" in (r.get_measure_points() or {}), "tsl template get lists the model's points", r.get_data())
r = c.publish(ModelUpRawRequest.builder().set_payload(b"\x01\x02\x03").build())
check(r is not None and r.get_payload() is not None, "model up_raw gets a reply on up_raw_reply")
r = c.publish(OtaVersionReportRequest.builder().set_version("1.0").build())
check(code_of(r) == 200 and twin(pk, dk)["firmware"]["version"] == "1.0", "ota inform (ota.inform) stored", code_of(r))
r = c.publish(OtaProgressReportRequest.builder().set_step("40").set_desc("downloading").build())
check(code_of(r) == 200 and twin(pk, dk)["ota"]["step"] == "40", "ota progress (ota.progress) stored", code_of(r))
# SDK 0.1.1 decodes this reply as a BaseResponse (OtaGetVersionResponse has no decode_to_object),
# so the firmware list is read from the data, in the fields its Firmware class reads.
r = c.publish(OtaGetVersionRequest.builder().build())
fw = r.get_data() or []
check(code_of(r) == 200 and [f.get("version") for f in fw] == ["1.0", "2.0"] and fw[1].get("fileUrl")
      and fw[1].get("sign") and fw[1].get("fileSize") == 2048 and fw[1].get("signMethod") == "md5",
      "ota getversion (Ota.device.getversion) lists the registry's firmwares", fw)

# 7. Commands: every command class, each reply matched back to its command.
status, v = command(pk, dk, {"method": "thing.service.measurepoint.set", "params": {"temp": 5}})
check(status == 200 and str(v.get("code")) == "200", "command measurepoint set answered", (status, v))
status, v = command(pk, dk, {"method": "thing.service.measurepoint.get", "params": ["temp"]})
check(status == 200 and str(v.get("code")) == "200" and v.get("data") == {"temp": 7}, "command measurepoint get answered with the values", (status, v))
status, v = command(pk, dk, {"method": "thing.service.restart", "params": {"delay": 1}})
check(status == 200 and str(v.get("code")) == "200", "command service invocation answered", (status, v))
status, v = command(pk, dk, {"method": "thing.model.down_raw", "payload": "hello"})
check(status == 200 and v.get("payload") == "raw-reply:hello", "command down_raw: the raw reply matched", (status, v))
status, v = command(pk, dk, {"method": "ota.device.upgrade", "params": {"version": "2.0"}})
check(status == 200 and ota_seen.get("version") == "2.0" and twin(pk, dk)["ota"]["target"] == "2.0",
      "command ota.device.upgrade carries the registry's firmware", (status, v))
status, v = command(pk, dk, {"method": "thing.reboot.now", "params": {}})
check(status == 400 and "thing.service.measurepoint.set" in v.get("message", ""), "a method EnOS does not send: 400 with the list", status)
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, sub_secret).build())
status, v = command(sub_pk, sub_dk, {"method": "combine.disable"})
check(status == 200 and "disable" in sub_commands and twin(sub_pk, sub_dk)["enabled"] is False,
      "command combine.disable reaches the gateway and disables the sub-device", (status, v))
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, sub_secret).build())
check(code_of(r) == 723, "a disabled sub-device's login gets 723", code_of(r))
status, v = command(sub_pk, sub_dk, {"method": "combine.enable"})
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(sub_pk, sub_dk, sub_secret).build())
check(status == 200 and code_of(r) == 200, "command combine.enable: the sub-device logs in again", (status, code_of(r)))
status, v = command(pk, "reg1", {"method": "combine.delete"})
check(status == 400, "combine.delete of a device in no topology is refused", status)
r = c.publish(TopoAddRequest.builder().add_sub_device(SubDeviceInfo(pk, "reg1", reg_secret)).build())
status, v = command(pk, "reg1", {"method": "combine.delete"})
r = c.publish(SubDeviceLoginRequest.builder().set_sub_device_info(pk, "reg1", reg_secret).build())
check(status == 200 and "delete" in sub_commands and code_of(r) == 705, "command combine.delete: the device is gone (705)", (status, code_of(r)))
c.close()

# 8. A wrong secret does not connect (the SDK does not raise: it just is not connected).
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

# 9. Message integration: securemode 4 with the product secret, posts for devices by key.
mi = MqttClient(profile=Profile.create_instance(MessageIntegrationLogin(url, pk, product_secret)))
mi.get_profile().set_auto_reconnect(False)
mi.get_profile().set_operation_timeout(5)
mi.connect()
check(mi.is_connected(), "message integration login (securemode 4)")
now = int(time.time() * 1000)
r = mi.publish(IntMeaturepointPostRequest.builder().add_meaturepoint(dk, now, {"temp": 55}).build())
check(code_of(r) == 200 and twin(pk, dk)["measurepoints"]["temp"]["value"] == 55,
      "integration measure point post stored for the device named", code_of(r))
r = mi.publish(IntEventPostRequest.builder().add_event(dk, now, "alarm", {"level": 9}).build())
check(code_of(r) == 200 and any(e["event"] == "alarm" for e in twin(pk, dk)["events"]),
      "integration event post stored", code_of(r))
r = mi.publish(IntAttributePostRequest.builder().add_attribute(dk, "color", "blue").build())
check(code_of(r) == 200, "integration attribute post code 200", code_of(r))
r = mi.publish(IntMeaturepointPostRequest.builder().add_meaturepoint("nobody", now, {"temp": 1}).build())
check(code_of(r) not in (None, 200), "integration post for an unknown device refused", code_of(r))
r = mi.publish(IntModelUpRawRequest.builder().set_payload(b"\x09\x08").build())
check(r is not None, "integration model up_raw gets a reply")
mi.close()

# 10. Dynamic activation with the product secret, then a login with the pushed secret.
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
if code_of(r) != 200:
    fail("post after activation: code %r" % code_of(r))
again.close()
print("ok: logged in with the pushed secret and posted")
print("all checks passed")
