"""The web console of `enos-connect serve` in a real browser: headless Debian Chromium driven over
WebDriver (Python selenium, chromedriver), with a device logged in by the official EnOS Python
SDK (enos-mqtt-sdk-python 0.1.1, paho-mqtt 1.6.1). Run by tests/it/console.rs and by
scripts/console-screenshot.sh; prints one `ok: ...` line per check and exits 1 at the first that
fails. Never prints a secret.

usage: console_check.py CONSOLE_URL MQTT_PORT PK DK DEVICE_SECRET [--screenshot PNG]

The checks: the device turns online on the fleet page within a second of its login; a freshly
opened device page draws each point's chart from its history (values posted before the page
opened); a measure point it posts shows on the device page and the point's chart gains a value;
a measure point set from the page reaches the SDK's handler and the page shows the device's
reply; the device's disconnect turns it offline. With --screenshot, the device reports an hour
of values (a minute apart), attributes, tags and an event, the device page is opened afresh
(its charts drawn from that history) and saved as PNG (docs/console.png).
"""
import math
import os
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a driver

from enos.core.MqttClient import MqttClient
from enos.message.downstream.tsl.MeasurepointSetCommand import MeasurepointSetCommand
from enos.message.downstream.tsl.MeasurepointSetReply import MeasurepointSetReply
from enos.message.upstream.ota.OtaProgressReportRequest import OtaProgressReportRequest
from enos.message.upstream.ota.OtaVersionReportRequest import OtaVersionReportRequest
from enos.message.upstream.tag.TagUpdateRequest import TagUpdateRequest
from enos.message.upstream.tsl.AttributeUpdateRequest import AttributeUpdateRequest
from enos.message.upstream.tsl.EventPostRequest import EventPostRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

args = sys.argv[1:]
shot = None
if "--screenshot" in args:
    i = args.index("--screenshot")
    shot = args[i + 1]
    del args[i : i + 2]
(console, mqtt_port, pk, dk, secret) = args[:5]
console = console.rstrip("/")


def fail(what):
    print("FAILED: " + what)
    sys.exit(1)


def check(ok, what, detail=""):
    if not ok:
        fail("%s %s" % (what, detail))
    print("ok: " + what)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", "--window-size=1440,1200", "--hide-scrollbars",
        "--user-data-dir=" + profile,
    ]:
        opts.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(15)
    d.set_script_timeout(15)
    return d, profile


def text(d, css):
    try:
        return d.find_element(By.CSS_SELECTOR, css).text
    except Exception:  # not drawn yet
        return None


def attr(d, css, name):
    try:
        return d.find_element(By.CSS_SELECTOR, css).get_attribute(name)
    except Exception:
        return None


def wait(pred, seconds, step=0.02):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def post(c, values, when=None):
    b = MeasurepointPostRequest.builder()
    for k, v in values.items():
        b.add_measurepoint(k, v)
    if when is not None:
        b.set_timestamp(when)
    r = c.publish(b.build())
    return int(r.get_code()) if r is not None else None


d, profile = browser()
c = None
try:
    row = 'tr[data-key="%s/%s"]' % (pk, dk)
    d.get(console + "/#/")
    check(wait(lambda: text(d, row + " .pill"), 10), "the fleet page lists the registry's device")
    check(wait(lambda: "live" == text(d, "#live"), 10), "the page follows serve's live stream")
    before = text(d, row + " .pill")
    check(before in ("never seen", "offline"), "the device is not online before it logs in", before)

    c = MqttClient(uri="tcp://127.0.0.1:" + mqtt_port, product_key=pk, device_key=dk, device_secret=secret)
    c.get_profile().set_auto_reconnect(False)
    c.get_profile().set_operation_timeout(5)
    sets = []
    got_set = threading.Event()

    def on_set(msg, _args):
        sets.append(msg.get_params())
        got_set.set()
        return MeasurepointSetReply.builder().set_code(200).set_message("set from the console").build()

    c.register_arrived_message_handler(MeasurepointSetCommand.get_class(), on_set)
    c.connect()
    t0 = time.monotonic()
    check(c.is_connected(), "the SDK logs in")
    online = wait(lambda: text(d, row + " .pill") == "online", 3, 0.01)
    took = time.monotonic() - t0
    check(online and took <= 1.0, "the device shows online within a second of its login (%.2f s)" % took)

    # Values from before the page opens: the page draws them from the point's history.
    now_ms = int(time.time() * 1000)
    for i in range(6):
        check(post(c, {"temp": 20 + i}, now_ms - (60 - i * 10) * 1000) == 200, "the SDK posts temp=%d, %d s ago" % (20 + i, 60 - i * 10))
    d.get(console + "/#/device/%s/%s" % (pk, dk))
    d.refresh()
    point = '.point[data-id="temp"]'
    drawn = int(wait(lambda: int(attr(d, point + " svg.chart", "data-n") or 0) >= 6 and attr(d, point + " svg.chart", "data-n"), 5) or 0)
    check(drawn >= 6, "a freshly opened device page draws the point's history (%d values)" % drawn)
    check(attr(d, point + " a.csv", "data-csv") == "temp", "the point offers its history as CSV")
    check(post(c, {"temp": 21.5}) == 200, "the SDK posts temp=21.5")
    check(wait(lambda: text(d, point + " .value") == "21.5", 3), "the device page shows temp 21.5",
          text(d, point + " .value"))
    n1 = int(attr(d, point + " svg.chart", "data-n") or 0)
    check(n1 >= 1, "the temp chart has a value", n1)
    check(post(c, {"temp": 23.25}) == 200, "the SDK posts temp=23.25")
    check(wait(lambda: text(d, point + " .value") == "23.25", 3), "the device page shows temp 23.25")
    n2 = int(wait(lambda: attr(d, point + " svg.chart", "data-n"), 3) or 0)
    check(n2 == n1 + 1, "the temp chart gains a point (%d -> %d)" % (n1, n2))

    box = d.find_element(By.ID, "act-set-id")
    box.clear()
    box.send_keys("temp")
    d.find_element(By.ID, "act-set-value").send_keys("30")
    d.find_element(By.ID, "act-set-send").click()
    check(got_set.wait(10), "the measure point set from the page reaches the SDK's handler")
    check("30" in str(sets[0]), "the handler gets temp=30", sets[0])
    reply = wait(lambda: (text(d, "#reply") or "") if "device replied" in (text(d, "#reply") or "") else None, 10)
    check(reply and "code 200" in reply and "set from the console" in reply,
          "the page shows the device's reply", reply)

    if shot:
        # An hour of a metering device, a value a minute, for docs/console.png: three points,
        # attributes, tags, an event, a firmware version and an OTA in progress; the page is
        # opened afresh and draws its charts from that history.
        c.publish(AttributeUpdateRequest.builder().add_attribute("model", "EM-300").add_attribute("site", "Lab bench 3").build())
        c.publish(TagUpdateRequest.builder().add_tag("owner", "firmware-team").add_tag("rack", "B2").build())
        c.publish(OtaVersionReportRequest.builder().set_version("1.4.2").build())
        c.publish(OtaProgressReportRequest.builder().set_step("62").set_desc("downloading").build())
        c.publish(EventPostRequest.builder().set_event_identifier("overheat").add_value("level", 2).build())
        start = int(time.time() * 1000) - 59 * 60_000
        for i in range(60):
            post(c, {"temp": round(22 + 2.5 * math.sin(i / 6) + (i % 4) * 0.15, 2),
                     "humidity": round(47 + 5 * math.cos(i / 9), 1),
                     "power": round(1200 + 300 * math.sin(i / 4) + 80 * math.cos(i / 1.7), 1)},
                 start + i * 60_000)
        d.refresh()
        check(wait(lambda: int(attr(d, '.point[data-id="power"] svg.chart', "data-n") or 0) >= 60, 5),
              "the reopened page draws an hour of history")
        time.sleep(0.5)
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(shot)
        check(os.path.getsize(shot) > 10_000, "screenshot saved to " + shot)

    c.close()
    c = None
    off = wait(lambda: "offline" in (text(d, "#dev-pill") or ""), 3, 0.01)
    check(off, "the device turns offline when it disconnects", text(d, "#dev-pill"))
finally:
    if c is not None:
        c.close()
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)
print("console: every check passed")
