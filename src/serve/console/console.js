// The console's page: plain JavaScript, no framework, no build step. It reads the twin
// (GET /twin/devices), the registry's models (GET /console/api/meta), the recent events
// (GET /console/api/log), then follows serve's live stream (GET /console/api/stream, Server-
// Sent Events: `device` a twin view, `log` event lines, `dropped`, `resync`). A device page
// draws its charts from each point's history (GET /twin/devices/{pk}/{dk}/history/{point}),
// then adds the live values. Commands are
// POST /twin/commands/{pk}/{dk} with the console token, when there is one, in X-Console-Token.
// Charts are hand-drawn SVG. Every text from a device is escaped before it is shown.
"use strict";

const HISTORY = 1000;  // values kept per measure point (the chart's width)
const LOG_KEEP = 1000; // event lines kept for the event log

const state = {
  meta: { products: {}, codes: {}, token_required: false, saved_to: null },
  devices: new Map(), // "pk/dk" -> twin view
  history: new Map(), // "pk/dk" -> Map(point -> [[time, value]])
  log: [],            // {at, event}, oldest first
  dropped: 0,
  route: null,
  renderQueued: false,
};

const token = (() => {
  const q = new URLSearchParams(location.search).get("token");
  if (q) {
    try { sessionStorage.setItem("console-token", q); } catch (_) { /* private mode */ }
    history.replaceState(null, "", location.pathname + location.hash); // out of the address bar
    return q;
  }
  try { return sessionStorage.getItem("console-token") || ""; } catch (_) { return ""; }
})();

const $ = (sel, root) => (root || document).querySelector(sel);
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const key = (pk, dk) => pk + "/" + dk;
const show = (v) => (v === null || v === undefined) ? "—" : (typeof v === "object" ? JSON.stringify(v) : String(v));

function ago(ms) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 2) return "just now";
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return new Date(ms).toLocaleString();
}
const clock = (ms) => ms ? new Date(ms).toLocaleTimeString() : "—";

// Which code an event carries: an MQTT login's is its CONNACK return code, an HTTP
// listener's refusal an HTTP status, a CoAP code is written 2.05; the rest are EnOS's codes.
function codeKind(e, code) {
  const mqtt = e.protocol === "mqtt" || e.protocol === "mqtts";
  if (mqtt && ["login", "login_refused", "connection_refused"].includes(e.event)) return "connack";
  if ((e.protocol === "http" || e.protocol === "https") && e.event === "connection_refused") return "http";
  if (/^[0-9]\.[0-9]{2}$/.test(String(code))) return "coap";
  return "enos";
}

// Success per kind: CONNACK 0, HTTP 2xx, CoAP 2.xx, EnOS 200.
function codeOk(kind, code) {
  const n = Number(code);
  if (kind === "connack") return n === 0;
  if (kind === "http") return n >= 200 && n < 300;
  if (kind === "coap") return String(code).startsWith("2.");
  return n === 200;
}

function codeText(code, e) {
  if (code === undefined || code === null) return "";
  const kind = codeKind(e || {}, code);
  const m = kind === "enos" ? state.meta.codes[String(code)] : "";
  const cls = codeOk(kind, code) ? "code-ok" : "code-bad";
  return `<span class="${cls}" data-kind="${kind}">${esc(code)}</span>` + (m ? ` <span class="muted">${esc(m)}</span>` : "");
}

// Why a command cannot reach the device now, or "" when it can: serve sends a command over a
// connection that carries downlink (meta.downlink, from capabilities.toml), the device's own or
// its gateway's.
function unreachable(d) {
  const down = state.meta.downlink || { schemes: [], over: "" };
  if (d.status !== "online") {
    return `${d.status === "never" ? "Never seen" : "Offline"}: a command reaches a device over its ${down.over} connection (or its gateway's), and this one has none now.`;
  }
  if (d.via || down.schemes.includes(d.protocol)) return "";
  return `Online over ${String(d.protocol || "?").toUpperCase()}, which carries no command to a device: a command reaches it over ${down.over} only.`;
}

// The fleet in natural order: fleet-2 before fleet-10.
const byName = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function pill(d) {
  if (d.enabled === false) return `<span class="pill disabled">disabled · ${esc(d.status)}</span>`;
  return `<span class="pill ${esc(d.status)}">${esc(d.status === "never" ? "never seen" : d.status)}</span>`;
}

// --- data -------------------------------------------------------------------------------

function remember(view) {
  const k = key(view.product_key, view.device_key);
  if (view.gone) { state.devices.delete(k); state.history.delete(k); return; }
  state.devices.set(k, view);
  let h = state.history.get(k);
  if (!h) { h = new Map(); state.history.set(k, h); }
  for (const [id, mp] of Object.entries(view.measurepoints || {})) {
    const v = mp && typeof mp === "object" && "value" in mp ? mp.value : mp;
    const n = typeof v === "number" ? v : (v && typeof v.value === "number" ? v.value : null);
    if (n === null || !isFinite(n)) continue;
    let s = h.get(id);
    if (!s) { s = []; h.set(id, s); }
    const t = mp.time || Date.now();
    const last = s[s.length - 1];
    if (!last || last[0] !== t || last[1] !== n) {
      s.push([t, n]);
      if (s.length > HISTORY) s.splice(0, s.length - HISTORY);
    }
  }
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", headers: token ? { "X-Console-Token": token } : {} });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

async function loadAll() {
  const [meta, twin, log] = await Promise.all([
    getJSON("/console/api/meta"), getJSON("/twin/devices"), getJSON("/console/api/log"),
  ]);
  state.meta = meta;
  const saved = $("#saved");
  if (saved) {
    saved.textContent = meta.saved_to ? "saved · " + meta.saved_to : "not saved";
    saved.className = "saved " + (meta.saved_to ? "on" : "off");
    saved.title = meta.saved_to
      ? `serve keeps its state in ${meta.saved_to} (--data): a restart keeps devices, secrets and history (--retain ${meta.retain})`
      : "serve keeps its state in memory only: a restart forgets it (start serve with --data FILE to keep it)";
  }
  state.devices.clear();
  for (const d of twin.devices) remember(d);
  state.log = log.events.slice(-LOG_KEEP);
}

function connect() {
  const live = $("#live");
  const es = new EventSource("/console/api/stream" + (token ? "?token=" + encodeURIComponent(token) : ""));
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  es.addEventListener("device", (e) => { remember(JSON.parse(e.data)); queueRender(); });
  es.addEventListener("log", (e) => {
    for (const item of JSON.parse(e.data)) state.log.push(item);
    if (state.log.length > LOG_KEEP) state.log.splice(0, state.log.length - LOG_KEEP);
    queueRender();
  });
  es.addEventListener("dropped", (e) => { state.dropped += JSON.parse(e.data).events || 0; queueRender(); });
  es.addEventListener("resync", async () => {
    try { const twin = await getJSON("/twin/devices"); for (const d of twin.devices) remember(d); } catch (_) { /* next resync */ }
    queueRender();
  });
}

function queueRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => { state.renderQueued = false; render(false); });
}

// --- routing ------------------------------------------------------------------------------

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, "");
  const parts = h.split("/").map(decodeURIComponent);
  if (parts[0] === "device" && parts.length >= 3) return { page: "device", pk: parts[1], dk: parts[2] };
  if (parts[0] === "events") return { page: "events" };
  return { page: "fleet" };
}

window.addEventListener("hashchange", () => { state.route = parseRoute(); render(true); });

function render(fresh) {
  const r = state.route;
  $("#nav-fleet").className = r.page === "events" ? "" : "on";
  $("#nav-events").className = r.page === "events" ? "on" : "";
  if (r.page === "device") window.ConsoleDevice.render(r, fresh);
  else if (r.page === "events") renderEvents(fresh);
  else renderFleet(fresh);
}

// --- fleet --------------------------------------------------------------------------------

function renderFleet(fresh) {
  const main = $("#main");
  if (fresh || !$("#fleet")) {
    main.innerHTML = `<div class="bar"><h1 class="grow">Fleet</h1>
      <span id="fleet-count" class="muted"></span>
      <input type="search" id="filter" placeholder="Filter: key, status, protocol…" autocomplete="off"></div>
      <div class="card"><table id="fleet"><thead><tr><th>Device</th><th>Status</th><th>Protocol</th>
      <th>Last seen</th><th>Messages</th><th>Errors</th><th>Latest values</th></tr></thead><tbody></tbody></table></div>`;
    $("#filter").addEventListener("input", () => renderFleet(false));
  }
  const words = $("#filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const all = [...state.devices.values()]
    .sort((a, b) => byName.compare(key(a.product_key, a.device_key), key(b.product_key, b.device_key)));
  const byKey = new Map(all.map((d) => [key(d.product_key, d.device_key), d]));
  const matches = (d) => {
    const text = [d.product_key, d.device_key, d.status, d.protocol || "", d.origin, d.enabled ? "" : "disabled"].join(" ").toLowerCase();
    return words.every((w) => text.includes(w));
  };
  const rows = [];
  const row = (d, sub) => {
    const k = key(d.product_key, d.device_key);
    const values = Object.entries(d.measurepoints || {}).slice(0, 4)
      .map(([id, mp]) => `${esc(id)}=<b>${esc(show(mp && mp.value !== undefined ? mp.value : mp))}</b>`).join(" · ");
    rows.push(`<tr data-key="${esc(k)}" class="${sub ? "sub" : ""}">
      <td><a href="#/device/${encodeURIComponent(d.product_key)}/${encodeURIComponent(d.device_key)}" class="mono nowrap">${esc(k)}</a></td>
      <td>${pill(d)}</td><td>${esc(d.protocol || "—")}${d.via ? ` <span class="muted">via ${esc(key(d.via.product_key, d.via.device_key))}</span>` : ""}</td>
      <td class="nowrap" title="${esc(d.last_seen ? new Date(d.last_seen).toISOString() : "")}">${ago(d.last_seen)}</td>
      <td>${esc(d.messages)}</td><td class="${d.errors ? "code-bad" : ""}">${esc(d.errors)}</td>
      <td class="mono">${values || '<span class="muted">—</span>'}</td></tr>`);
  };
  let shown = 0;
  for (const d of all) {
    if (d.gateway && byKey.has(key(d.gateway.product_key, d.gateway.device_key))) continue; // under its gateway
    const subs = (d.sub_devices || []).map((s) => byKey.get(key(s.product_key, s.device_key))).filter(Boolean);
    const subsShown = subs.filter(matches);
    if (!matches(d) && subsShown.length === 0) continue;
    row(d, false); shown++;
    for (const s of (matches(d) ? subs : subsShown)) { row(s, true); shown++; }
  }
  $("#fleet tbody").innerHTML = rows.join("") ||
    `<tr><td colspan="7" class="empty">No device matches. Devices of the registry and those registered show here.</td></tr>`;
  const online = all.filter((d) => d.status === "online").length;
  $("#fleet-count").textContent = `${shown} shown · ${online} online · ${all.length} in all`;
}

// --- event log ----------------------------------------------------------------------------

function eventRow(item) {
  const e = item.event || {};
  const who = e.product_key ? key(e.product_key, e.device_key || "") : "";
  return `<tr><td class="mono nowrap">${clock(item.at)}</td><td>${esc(e.event || "")}</td><td>${esc(e.protocol || "")}</td>
    <td class="mono nowrap">${who ? `<a href="#/device/${encodeURIComponent(e.product_key)}/${encodeURIComponent(e.device_key || "")}">${esc(who)}</a>` : ""}</td>
    <td class="mono">${esc(e.method || e.topic || "")}</td><td class="nowrap">${codeText(e.code, e)}</td><td>${esc(e.message || "")}</td></tr>`;
}

function renderEvents(fresh) {
  const main = $("#main");
  if (fresh || !$("#events")) {
    main.innerHTML = `<div class="bar"><h1 class="grow">Event log</h1>
      <input type="search" id="ev-device" placeholder="device (pk/dk)" autocomplete="off">
      <input type="search" id="ev-event" placeholder="event (request, login…)" autocomplete="off">
      <input type="search" id="ev-code" placeholder="code" autocomplete="off" size="6"></div>
      <div id="ev-dropped"></div>
      <div class="card"><table id="events"><thead><tr><th>Time</th><th>Event</th><th>Protocol</th><th>Device</th>
      <th>Method / topic</th><th>Code</th><th>Message</th></tr></thead><tbody></tbody></table></div>`;
    for (const id of ["#ev-device", "#ev-event", "#ev-code"]) $(id).addEventListener("input", () => renderEvents(false));
  }
  const fd = $("#ev-device").value.trim(), fe = $("#ev-event").value.trim(), fc = $("#ev-code").value.trim();
  const rows = [];
  for (let i = state.log.length - 1; i >= 0 && rows.length < 300; i--) {
    const e = state.log[i].event || {};
    if (fd && !key(e.product_key || "", e.device_key || "").includes(fd)) continue;
    if (fe && !(e.event || "").includes(fe)) continue;
    if (fc && String(e.code ?? "") !== fc) continue;
    rows.push(eventRow(state.log[i]));
  }
  $("#events tbody").innerHTML = rows.join("") || `<tr><td colspan="7" class="empty">No event matches.</td></tr>`;
  $("#ev-dropped").innerHTML = state.dropped ? `<div class="note">${esc(state.dropped)} event lines were not sent to this page (more than it shows per second); stdout and the record have them all.</div>` : "";
}

window.ConsoleCore = { state, token, $, esc, key, show, ago, clock, codeText, pill, eventRow, unreachable, getJSON, HISTORY };

(async () => {
  state.route = parseRoute();
  try { await loadAll(); } catch (e) { $("#main").innerHTML = `<div class="note">Cannot read serve: ${esc(e.message)}</div>`; }
  render(true);
  connect();
  setInterval(() => { if (state.route.page === "fleet") renderFleet(false); }, 5000); // "… ago"
})();
