"""The console's pages as a person reads them at 1280 px (issue 32, items 13 and 14): headless
Debian Chromium over WebDriver (Python selenium, chromedriver). Run by tests/it/console.rs
after it has put `serve`'s devices in the states checked; prints one `ok: ...` line per check
and exits 1 at the first that fails.

usage: console_page_check.py CONSOLE_URL PK MQTT_DK HTTP_DK NEVER_DK FLEET_PREFIX

- MQTT_DK is connected over MQTT (its login is CONNACK 0) and posted a point its model lacks
  (EnOS 1204); HTTP_DK is online through an HTTP session only (it was connected over MQTT
  before); NEVER_DK was never seen; FLEET_PREFIX-1 to FLEET_PREFIX-12 are in the registry.

The checks: codes are judged per kind (CONNACK 0, HTTP 2xx, CoAP 2.xx and EnOS 200 are
success); the fleet is in natural order; no device key or time wraps inside itself; the device
page has one scroll (no scroll box inside the page) and nothing wider than the window; a
device online over HTTP says so; the actions say why a command cannot reach a device before
one is sent.
"""
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a driver

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

(console, pk, mqtt_dk, http_dk, never_dk, prefix) = sys.argv[1:7]
console = console.rstrip("/")


def fail(what):
    print("FAILED: " + what)
    sys.exit(1)


def check(ok, what, detail=""):
    if not ok:
        fail("%s %s" % (what, detail))
    print("ok: " + what)


def wait(pred, seconds, step=0.05):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            v = pred()
        except Exception:  # the page is being redrawn
            v = None
        if v:
            return v
        time.sleep(step)
    return pred()


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", "--window-size=1280,900", "--user-data-dir=" + profile,
    ]:
        opts.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(15)
    d.set_script_timeout(15)
    return d, profile


# The number of lines an element's text takes: more than one is a wrap inside it.
LINES = """
const r = document.createRange(); r.selectNodeContents(arguments[0]);
const tops = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
return tops.size;"""

# Every element (but a command's reply box and text fields) whose content scrolls inside it.
SCROLL_BOXES = """
const out = [];
for (const el of document.querySelectorAll("body *")) {
  if (el.closest(".reply") || ["TEXTAREA", "SELECT", "INPUT"].includes(el.tagName)) continue;
  const s = getComputedStyle(el);
  const y = ["auto", "scroll"].includes(s.overflowY) && el.scrollHeight > el.clientHeight + 1;
  const x = ["auto", "scroll"].includes(s.overflowX) && el.scrollWidth > el.clientWidth + 1;
  if (x || y) out.push(el.tagName + "#" + el.id + "." + el.className);
}
return out;"""

d, profile = browser()
try:
    d.get(console + "/#/")
    rows = lambda: [r.get_attribute("data-key") for r in d.find_elements(By.CSS_SELECTOR, "#fleet tr[data-key]")]
    check(wait(lambda: len(rows()) >= 12, 10), "the fleet page lists the registry's devices")
    fleet = [k for k in rows() if k.startswith("%s/%s-" % (pk, prefix))]
    want = ["%s/%s-%d" % (pk, prefix, i) for i in range(1, 13)]
    check(fleet == want, "the fleet is in natural order (%s-2 before %s-10)" % (prefix, prefix), fleet)

    http_row = 'tr[data-key="%s/%s"]' % (pk, http_dk)
    status = wait(lambda: d.find_element(By.CSS_SELECTOR, http_row + " .pill").text == "online", 5)
    proto = d.find_element(By.CSS_SELECTOR, http_row + " td:nth-child(3)").text
    check(status and proto.startswith("http"), "a device online through an HTTP session shows http", proto)

    wrapped = [a.text for a in d.find_elements(By.CSS_SELECTOR, "#fleet tr[data-key] td:first-child a")
               if d.execute_script(LINES, a) > 1]
    check(not wrapped, "no device key wraps in the fleet list", wrapped)

    d.get(console + "/#/events")
    check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "#events tbody tr td:nth-child(6) span"), 10),
          "the event log shows codes")

    def code_class(event, protocol, code):
        for r in d.find_elements(By.CSS_SELECTOR, "#events tbody tr"):
            cells = r.find_elements(By.TAG_NAME, "td")
            if len(cells) < 6 or event not in (None, cells[1].text) or cells[2].text != protocol:
                continue
            spans = cells[5].find_elements(By.CSS_SELECTOR, "span[data-kind]")
            if spans and spans[0].text == code:
                return spans[0].get_attribute("class")
        return None

    check(code_class("login", "mqtt", "0") == "code-ok", "an MQTT login's CONNACK 0 is a success",
          code_class("login", "mqtt", "0"))
    check(code_class("login", "http", "200") == "code-ok", "an HTTP login's EnOS 200 is a success")
    check(code_class(None, "mqtt", "1204") == "code-bad", "EnOS 1204 is a failure",
          code_class(None, "mqtt", "1204"))
    wrapped = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#events tbody tr td:nth-child(1), #events tbody tr td:nth-child(4)")
               if c.text and d.execute_script(LINES, c) > 1]
    check(not wrapped, "no time or device key wraps in the event log", wrapped)

    d.get(console + "/#/device/%s/%s" % (pk, mqtt_dk))
    check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "#messages tbody tr"), 10), "the device page lists its messages")
    time.sleep(0.5)
    boxes = d.execute_script(SCROLL_BOXES)
    check(not boxes, "the device page has one scroll, no scroll box inside it", boxes)
    wide = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check(wide <= 0, "nothing on the device page is wider than 1280 px", wide)
    wrapped = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#messages tbody tr td:nth-child(1), #messages tbody tr td:nth-child(4)")
               if c.text and d.execute_script(LINES, c) > 1]
    check(not wrapped, "no time or device key wraps in the messages", wrapped)
    reach = d.find_element(By.ID, "act-reach")
    check(not reach.is_displayed(), "a device connected over MQTT has no note on its actions", reach.text)

    d.get(console + "/#/device/%s/%s" % (pk, http_dk))
    note = wait(lambda: d.find_element(By.ID, "act-reach").text, 10) or ""
    check("HTTP" in note and "carries no command" in note and "MQTT" in note,
          "the actions say a device online over HTTP cannot take a command", note)

    d.get(console + "/#/device/%s/%s" % (pk, never_dk))
    note = wait(lambda: d.find_element(By.ID, "act-reach").text, 10) or ""
    check(note.startswith("Never seen") and "MQTT or CoAP" in note,
          "the actions say a device never seen cannot take a command", note)
finally:
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)
print("console pages: every check passed")
