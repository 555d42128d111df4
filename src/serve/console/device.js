// The device page: facts, measure points with charts (drawn from each point's history when
// the page opens, for the time range chosen, then live; each downloadable as CSV),
// attributes, tags, topology, events, firmware and OTA, this device's messages, and the
// actions (commands) with their replies. Sections are updated in place, so a form being
// filled in is never redrawn.
"use strict";

window.ConsoleDevice = (() => {
  const C = () => window.ConsoleCore;
  let current = null; // "pk/dk" of the page drawn
  // The time ranges a chart shows, in ms; the choice is kept for the tab.
  const RANGES = [["15 min", 9e5], ["1 h", 3.6e6], ["6 h", 2.16e7], ["24 h", 8.64e7], ["7 days", 6.048e8], ["all", 0]];
  let range = 3.6e6;
  try { range = Number(sessionStorage.getItem("console-range") || range); } catch (_) { /* private mode */ }

  const historyPath = (d, id) =>
    `/twin/devices/${encodeURIComponent(d.product_key)}/${encodeURIComponent(d.device_key)}/history/${encodeURIComponent(id)}`;
  const since = () => (range ? Date.now() - range : 0);
  const numberOf = (v) => {
    const n = typeof v === "number" ? v : (v && typeof v === "object" && typeof v.value === "number" ? v.value : null);
    return n !== null && isFinite(n) ? n : null;
  };

  // Each numeric point's history for the range, then the live values already seen after it.
  async function loadHistory(d) {
    const { state, key, getJSON, HISTORY } = C();
    const k = key(d.product_key, d.device_key);
    let h = state.history.get(k);
    if (!h) { h = new Map(); state.history.set(k, h); }
    const from = since();
    await Promise.all(Object.keys(d.measurepoints || {}).map(async (id) => {
      let got;
      try { got = await getJSON(`${historyPath(d, id)}?from=${from}&limit=${HISTORY}`); } catch (_) { return; }
      const series = [];
      for (const { time, value } of got.values || []) {
        const n = numberOf(value);
        if (n !== null) series.push([time, n]);
      }
      const last = series.length ? series[series.length - 1][0] : -Infinity;
      const live = (h.get(id) || []).filter(([t]) => t > last && t >= from);
      h.set(id, series.concat(live).slice(-HISTORY));
    }));
    if (current === k) update(state.devices.get(k) || d);
  }

  // The point's values in the range as CSV, fetched with the token and saved as a file.
  async function downloadCsv(d, id) {
    const { token } = C();
    const r = await fetch(`${historyPath(d, id)}?format=csv&from=${since()}&limit=1000000`,
      { cache: "no-store", headers: token ? { "X-Console-Token": token } : {} });
    if (!r.ok) return;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url; a.download = `${d.product_key}-${d.device_key}-${id}.csv`;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // A line chart of [[time, value]] as SVG: the area, the line, the last value's dot.
  function chart(series) {
    const W = 240, H = 64;
    const n = series.length;
    if (n === 0) return `<svg class="chart" data-n="0" viewBox="0 0 ${W} ${H}"></svg>`;
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of series) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const min = lo, max = hi;
    if (lo === hi) { lo -= 1; hi += 1; }
    const t0 = series[0][0], t1 = series[n - 1][0];
    const x = (t, i) => (t1 > t0 ? (t - t0) / (t1 - t0) : (n > 1 ? i / (n - 1) : 1)) * (W - 6) + 3;
    const y = (v) => H - 4 - ((v - lo) / (hi - lo)) * (H - 10);
    const pts = series.map(([t, v], i) => `${x(t, i).toFixed(1)},${y(v).toFixed(1)}`);
    const last = pts[pts.length - 1].split(",");
    const area = `M${pts[0].split(",")[0]},${H} L${pts.join(" L")} L${last[0]},${H} Z`;
    return `<svg class="chart" data-n="${n}" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">
      <line class="grid" x1="0" y1="${H - 4}" x2="${W}" y2="${H - 4}"/>
      <path class="area" d="${area}"/><polyline class="line" vector-effect="non-scaling-stroke" points="${pts.join(" ")}"/>
      <circle class="dot" cx="${last[0]}" cy="${last[1]}" r="2.5"/></svg>
      <div class="when">${n} value${n === 1 ? "" : "s"} since ${C().clock(t0)} · min ${fmt(min)} · max ${fmt(max)}</div>`;
  }
  const fmt = (v) => (Math.abs(v) >= 1000 || Number.isInteger(v)) ? String(Math.round(v * 100) / 100) : v.toPrecision(4);

  function kv(obj, empty) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return `<p class="empty">${empty}</p>`;
    const { esc, show } = C();
    return `<dl class="kv">${entries.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(show(v))}</dd>`).join("")}</dl>`;
  }

  function unitOf(d, id) {
    const p = (C().state.meta.products[d.product_key] || {}).measurepoints || [];
    const m = p.find((x) => x.id === id);
    return m && m.unit ? m.unit : "";
  }

  function skeleton(d) {
    const { esc, key } = C();
    const k = key(d.product_key, d.device_key);
    return `<div class="bar"><div class="grow"><a href="#/" class="muted">Fleet</a> / <span class="mono">${esc(d.product_key)}</span>
      <h1 class="mono" id="dev-title">${esc(k)}</h1></div><span id="dev-pill"></span></div>
      <div class="facts" id="dev-facts"></div>
      <div class="grid">
        <section class="card span8"><h2>Measure points <span class="range-box">range <select id="range" class="range">${
          RANGES.map(([label, ms]) => `<option value="${ms}"${ms === range ? " selected" : ""}>${label}</option>`).join("")}</select></span></h2>
          <div id="points" class="points"></div></section>
        <section class="card span4 actions"><h2>Actions</h2><div id="actions"></div></section>
        <section class="card span4"><h2>Attributes</h2><div id="attributes"></div></section>
        <section class="card span4"><h2>Tags</h2><div id="tags"></div></section>
        <section class="card span4"><h2>Topology</h2><div id="topology"></div></section>
        <section class="card span4"><h2>Firmware and OTA</h2><div id="firmware"></div></section>
        <section class="card span8"><h2>Events</h2><div id="dev-events"></div></section>
        <section class="card span12"><h2>Messages <span class="muted">(newest first)</span></h2><div id="messages"></div></section>
      </div>`;
  }

  function update(d) {
    const { $, esc, key, ago, clock, pill, state, show, eventRow } = C();
    const k = key(d.product_key, d.device_key);
    $("#dev-pill").innerHTML = pill(d);
    $("#dev-facts").innerHTML = [
      ["protocol", d.protocol || "—"], ["via", d.via ? key(d.via.product_key, d.via.device_key) : "—"],
      ["online since", d.online_since ? clock(d.online_since) : "—"], ["last seen", ago(d.last_seen)],
      ["messages", d.messages], ["errors", d.errors], ["origin", d.origin], ["asset", d.asset_id],
    ].map(([n, v]) => `<span>${esc(n)} <b>${esc(v)}</b></span>`).join("");
    const hist = state.history.get(k) || new Map();
    const points = Object.entries(d.measurepoints || {});
    const from = since();
    $("#points").innerHTML = points.length ? points.map(([id, mp]) => {
      const v = mp && mp.value !== undefined ? mp.value : mp;
      const series = (hist.get(id) || []).filter(([t]) => t >= from);
      return `<div class="point" data-id="${esc(id)}"><a href="#" class="csv" data-csv="${esc(id)}" title="this point's values in the range, as CSV">CSV</a><div class="name">${esc(id)}</div>
        <div><span class="value">${esc(show(v))}</span><span class="unit">${esc(unitOf(d, id))}</span></div>
        <div class="when">${mp && mp.time ? "measured " + esc(clock(mp.time)) : ""}</div>
        ${series.length ? chart(series) : ""}</div>`;
    }).join("") : `<p class="empty">No measure point yet: the device's posts show here, live.</p>`;
    $("#attributes").innerHTML = kv(d.attributes, "No attribute reported.");
    $("#tags").innerHTML = kv(d.tags, "No tag.");
    const link = (x) => `<a class="mono" href="#/device/${encodeURIComponent(x.product_key)}/${encodeURIComponent(x.device_key)}">${esc(key(x.product_key, x.device_key))}</a>`;
    $("#topology").innerHTML = `<dl class="kv"><dt>gateway</dt><dd>${d.gateway ? link(d.gateway) : "—"}</dd>
      <dt>sub-devices</dt><dd>${(d.sub_devices || []).map(link).join("<br>") || "—"}</dd>
      <dt>enabled</dt><dd>${esc(d.enabled)}</dd></dl>` + (d.network ? `<h2 class="gap">Network</h2>` + kv(d.network, "") : "");
    const ota = d.ota;
    const step = ota && ota.step !== undefined && ota.step !== null ? Number(ota.step) : null;
    $("#firmware").innerHTML = `<dl class="kv"><dt>version</dt><dd>${esc(d.firmware ? d.firmware.version : "not reported")}</dd>
      <dt>OTA target</dt><dd>${esc(ota && ota.target ? ota.target : "—")}</dd>
      <dt>step</dt><dd>${esc(step === null ? "—" : step)}${ota && ota.desc ? " · " + esc(ota.desc) : ""}</dd></dl>` +
      (step !== null && step >= 0 ? `<div class="progress"><div data-w="${Math.min(100, step)}"></div></div>` : "");
    for (const el of document.querySelectorAll("[data-w]")) el.style.width = el.dataset.w + "%";
    const evs = (d.events || []).slice().reverse();
    $("#dev-events").innerHTML = evs.length ? `<table><thead><tr><th>Time</th><th>Event</th><th>Values</th></tr></thead><tbody>${
      evs.map((e) => `<tr><td class="mono">${esc(clock(e.time))}</td><td>${esc(e.event)}</td><td class="mono">${esc(show(e.values))}</td></tr>`).join("")}</tbody></table>`
      : `<p class="empty">No event posted.</p>`;
    const mine = [];
    for (let i = state.log.length - 1; i >= 0 && mine.length < 200; i--) {
      const e = state.log[i].event || {};
      if (e.product_key === d.product_key && e.device_key === d.device_key) mine.push(eventRow(state.log[i]));
    }
    $("#messages").innerHTML = mine.length ? `<table><thead><tr><th>Time</th><th>Event</th><th>Protocol</th><th>Device</th>
      <th>Method / topic</th><th>Code</th><th>Message</th></tr></thead><tbody>${mine.join("")}</tbody></table>`
      : `<p class="empty">No message since the console opened.</p>`;
    const why = C().unreachable(d);
    const reach = $("#act-reach");
    if (reach) { reach.hidden = !why; reach.textContent = why; }
    const sub = $("#act-sub-note");
    if (sub) sub.textContent = d.gateway ? `in the topology of ${key(d.gateway.product_key, d.gateway.device_key)}` : "not a sub-device: these act on a gateway's sub-devices";
  }

  // --- actions ------------------------------------------------------------------------------

  function actionsHtml(d) {
    const { esc, state } = C();
    const prod = state.meta.products[d.product_key] || {};
    const ids = (prod.measurepoints || []).map((m) => m.id);
    const opts = (list) => list.map((x) => `<option>${esc(x)}</option>`).join("");
    return `<p id="act-reach" class="note" hidden></p><div class="tabs" id="act-tabs">
        <button type="button" data-tab="set" class="on">Set point</button><button type="button" data-tab="service">Service</button>
        <button type="button" data-tab="raw">down_raw</button><button type="button" data-tab="ota">OTA</button>
        <button type="button" data-tab="sub">Sub-device</button></div>
      <form data-form="set"><div class="row"><input type="text" id="act-set-id" list="act-ids" placeholder="point id" value="${esc(ids[0] || "")}">
        <input type="text" id="act-set-value" placeholder="value (JSON: 42, true, &quot;on&quot;)"></div>
        <datalist id="act-ids">${opts(ids)}</datalist>
        <div class="row"><button type="submit" id="act-set-send">Set measure point</button><span class="muted">thing.service.measurepoint.set</span></div></form>
      <form data-form="service" hidden><div class="row"><input type="text" id="act-svc" list="act-svcs" placeholder="service id" value="${esc((prod.services || [])[0] || "")}"></div>
        <datalist id="act-svcs">${opts(prod.services || [])}</datalist>
        <textarea id="act-svc-params" placeholder='params as JSON, e.g. {"delay": 5}'>{}</textarea>
        <div class="row"><button type="submit">Invoke service</button></div></form>
      <form data-form="raw" hidden><textarea id="act-raw" placeholder="bytes as text, or hex with the box ticked"></textarea>
        <div class="row"><label><input type="checkbox" id="act-raw-hex"> hex</label><button type="submit">Send down_raw</button></div></form>
      <form data-form="ota" hidden><div class="row"><select id="act-ota">${opts(prod.firmwares || [])}</select>
        <button type="submit" ${(prod.firmwares || []).length ? "" : "disabled"}>Push OTA upgrade</button></div>
        <span class="muted">${(prod.firmwares || []).length ? "firmwares of the registry ([[firmwares]])" : "the registry lists no firmware for this product"}</span></form>
      <form data-form="sub" hidden><p class="muted" id="act-sub-note"></p><div class="row">
        <button type="button" class="ghost" data-life="combine.enable">Enable</button>
        <button type="button" class="ghost" data-life="combine.disable">Disable</button>
        <button type="button" class="danger" data-life="combine.delete">Delete</button></div></form>
      <div class="row gap"><span class="muted">timeout</span><input type="number" id="act-timeout" class="narrow" value="10" min="1" max="300"><span class="muted">s</span></div>
      <div id="reply" class="reply" hidden></div>`;
  }

  async function send(d, body) {
    const { $, token } = C();
    const out = $("#reply");
    out.hidden = false; out.className = "reply"; out.textContent = `${body.method}: waiting for the device…`;
    const t = Math.max(1, Math.min(300, Number($("#act-timeout").value) || 10));
    const headers = { "Content-Type": "application/json" };
    if (token) headers["X-Console-Token"] = token;
    try {
      const r = await fetch(`/twin/commands/${encodeURIComponent(d.product_key)}/${encodeURIComponent(d.device_key)}?timeout=${t}`,
        { method: "POST", headers, body: JSON.stringify(body) });
      const text = await r.text();
      let v; try { v = JSON.parse(text); } catch (_) { v = text; }
      const code = v && typeof v === "object" ? v.code : undefined;
      const ok = r.ok && (code === undefined || Number(code) === 200);
      const why = r.status === 504 ? "timeout: the device did not reply in time" : (r.ok ? "device replied" : `HTTP ${r.status}`);
      out.className = "reply " + (ok ? "ok" : "bad");
      out.textContent = `${body.method}: ${why}${code !== undefined ? " · code " + code : ""}\n` + JSON.stringify(v, null, 2);
    } catch (e) {
      out.className = "reply bad"; out.textContent = `${body.method}: ${e.message}`;
    }
  }

  function wire(d) {
    const { $ } = C();
    const root = $("#actions");
    root.addEventListener("click", (e) => {
      const tab = e.target.closest("[data-tab]");
      if (tab) {
        for (const b of root.querySelectorAll("[data-tab]")) b.classList.toggle("on", b === tab);
        for (const f of root.querySelectorAll("form")) f.hidden = f.dataset.form !== tab.dataset.tab;
      }
      const life = e.target.closest("[data-life]");
      if (life) send(d, { method: life.dataset.life, params: {} });
    });
    root.addEventListener("submit", (e) => {
      e.preventDefault();
      const form = e.target.dataset.form;
      const out = $("#reply");
      const fail = (m) => { out.hidden = false; out.className = "reply bad"; out.textContent = m; };
      if (form === "set") {
        const id = $("#act-set-id").value.trim(), raw = $("#act-set-value").value.trim();
        if (!id || !raw) return fail("give a point id and a value");
        let v; try { v = JSON.parse(raw); } catch (_) { v = raw; }
        send(d, { method: "thing.service.measurepoint.set", params: { [id]: v } });
      } else if (form === "service") {
        const id = $("#act-svc").value.trim();
        let params; try { params = JSON.parse($("#act-svc-params").value || "{}"); } catch (err) { return fail("params are not JSON: " + err.message); }
        if (!id) return fail("give a service id");
        send(d, { method: "thing.service." + id, params });
      } else if (form === "raw") {
        const text = $("#act-raw").value;
        if ($("#act-raw-hex").checked) {
          const hex = text.replace(/\s+/g, "");
          if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return fail("not hex: pairs of 0-9a-f");
          const bin = hex.match(/../g) || [];
          send(d, { method: "thing.model.down_raw", payload_base64: btoa(bin.map((h) => String.fromCharCode(parseInt(h, 16))).join("")) });
        } else send(d, { method: "thing.model.down_raw", payload: text });
      } else if (form === "ota") {
        send(d, { method: "ota.device.upgrade", params: { version: $("#act-ota").value } });
      }
    });
  }

  function render(route, fresh) {
    const { $, state, key, esc } = C();
    const k = key(route.pk, route.dk);
    const d = state.devices.get(k);
    if (!d) {
      current = null;
      $("#main").innerHTML = `<div class="note">No device ${esc(k)} in serve's twin. <a href="#/">Back to the fleet</a></div>`;
      return;
    }
    if (fresh || current !== k || !$("#points")) {
      current = k;
      $("#main").innerHTML = skeleton(d);
      $("#actions").innerHTML = actionsHtml(d);
      wire(d);
      $("#range").addEventListener("change", (e) => {
        range = Number(e.target.value);
        try { sessionStorage.setItem("console-range", String(range)); } catch (_) { /* private mode */ }
        loadHistory(C().state.devices.get(k) || d);
      });
      $("#points").addEventListener("click", (e) => {
        const a = e.target.closest("[data-csv]");
        if (!a) return;
        e.preventDefault();
        downloadCsv(C().state.devices.get(k) || d, a.dataset.csv);
      });
      loadHistory(d);
    }
    update(d);
  }

  return { render };
})();
