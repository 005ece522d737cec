// The console's operator views (docs/headend.md): tables as values beside the hex (a Read's
// result and a logged message), the table editor (GET the decoded table, edit fields, PUT
// them back: the server encodes and writes the changed bytes), a meter's read status, load
// profile (chart with interval status) and event log, the alarms of meters that fail reads
// (nav badge and list), and the message log's filter bar and exports.
// Self-contained like notices.js: console.js announces exchanges and messages with events
// (c1222:exchange, c1222:message); the cards are added whenever console.js draws a page.
(() => {
  "use strict";

  const ALARM_POLL_MS = 10000;
  const LP_POINTS = 2000;     // intervals drawn at most
  const EVENTS_SHOWN = 100;
  const EDITABLE = new Set(["int", "number", "text", "binary", "bool", "datetime", "set"]);

  const { el } = window.c1222Dom;
  const api = (path, init) => fetch(path, { headers: { Accept: "application/json" }, ...(init || {}) });
  const spaced = (hex) => (hex || "").replace(/(..)(?=.)/g, "$1 ");
  const pad = (n) => String(n).padStart(2, "0");
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function detailText(body, status) {
    const d = body && body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((x) => `${(x.loc || []).slice(-1)[0]}: ${x.msg}`).join("; ");
    return `HTTP ${status}`;
  }

  // ------------------------------------------------------------------ tables as values

  function valuesTable(t) {
    const head = el("div", { class: "tv-head" },
      el("b", { text: `Table ${t.table} ${t.name}` }),
      el("span", { class: "muted small", text: ` · ${t.direction === "write" ? "written" : "read"} ${t.count} bytes` +
        (t.offset ? ` at offset ${t.offset}` : "") }));
    const box = el("div", { class: "table-values", "data-testid": "table-values", "data-table": String(t.table) }, head);
    if (t.note) box.append(el("p", { class: "muted small", "data-testid": "table-note", text: t.note }));
    if (t.error) box.append(el("p", { class: "bad small", "data-testid": "table-error", text: `not decoded: ${t.error}` }));
    if (t.fields && t.fields.length) {
      const rows = t.fields.map((f) => el("tr", { "data-testid": "value-row", "data-path": f.path },
        el("td", { class: "tv-name", text: f.path }),
        el("td", { class: "tv-value", text: f.text ?? String(f.value) }),
        el("td", { class: "tv-unit muted", text: f.unit || "" }),
        el("td", { class: "tv-hex", title: f.offset === null ? "" : `${f.length} bytes at offset ${f.offset}`,
                   text: spaced(f.hex || "") })));
      box.append(el("div", { class: "table-wrap" }, el("table", { class: "values-table" },
        el("thead", {}, el("tr", {}, ...["Field", "Value", "Unit", "Bytes"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows))));
      if (t.truncated) box.append(el("p", { class: "muted small", text: "… more fields: see the hex" }));
    }
    return box;
  }

  function showTables(container, tables, slot) {
    let holder = container.querySelector(`[data-slot=${slot}]`);
    if (!holder) {
      holder = el("div", { class: "tables-slot", "data-slot": slot, "data-testid": `${slot}-tables` });
      container.append(holder);
    }
    holder.replaceChildren(...(tables || []).map(valuesTable));
  }

  window.addEventListener("c1222:exchange", (e) => showTables(e.detail.container, e.detail.exchange.tables, "result"));
  window.addEventListener("c1222:message", (e) => showTables(e.detail.container, e.detail.message.tables, "message"));

  // ------------------------------------------------------------------ the table editor

  function editor(apTitle, writable) {
    const base = `/api/nodes/${encodeURIComponent(apTitle)}/tables/`;
    const number = el("input", { type: "number", min: "0", max: "65535", value: "6", class: "narrow",
                                 "data-testid": "editor-table", "aria-label": "table number" });
    const load = el("button", { type: "button", class: "ghost", "data-testid": "editor-load", text: "Read table" });
    const write = el("button", { type: "button", class: "svc danger", "data-testid": "editor-write", text: "Write changes", disabled: true,
                                 hidden: !writable });
    const status = el("p", { class: "muted small", "data-testid": "editor-status", text: "Read a table to edit its fields." });
    const body = el("div", { "data-testid": "editor-fields" });
    let current = null, inputs = new Map();

    function input(f) {
      const attrs = { "data-testid": "editor-field", "data-path": f.path, "aria-label": f.path };
      if (f.kind === "bool") {
        const box = el("input", { type: "checkbox", ...attrs });
        box.checked = !!f.value;
        return box;
      }
      const text = f.kind === "set" ? JSON.stringify(f.value) : (f.value === null ? "" : String(f.value));
      return el("input", { type: "text", value: text, spellcheck: "false", autocomplete: "off", ...attrs,
                           class: f.kind === "text" || f.kind === "binary" ? "wide" : "" });
    }

    function draw(t) {
      current = t; inputs = new Map();
      body.replaceChildren();
      if (!t) return;
      if (t.error || !t.fields.length) {
        body.append(el("p", { class: t.error ? "bad small" : "muted small", text: t.error || t.note || "no fields" }));
        write.disabled = true;
        return;
      }
      const rows = t.fields.filter((f) => f.offset !== null).map((f) => {
        const editable = EDITABLE.has(f.kind);
        const cell = editable ? input(f) : el("span", { class: "muted", text: f.text });
        if (editable) inputs.set(f.path, { f, input: cell });
        return el("tr", {}, el("td", { class: "tv-name", text: f.path }), el("td", {}, cell),
                  el("td", { class: "muted small", text: editable && f.unit ? `${f.text}` : (f.unit || "") }));
      });
      body.append(el("div", { class: "table-wrap editor-wrap" }, el("table", { class: "values-table" }, el("tbody", {}, ...rows))));
      write.disabled = false;
    }

    async function read() {
      const n = number.value.trim();
      if (n === "" || !(Number(n) >= 0)) { status.className = "bad small"; status.textContent = "table: a number"; return; }
      load.disabled = true;
      status.className = "muted small"; status.textContent = `reading table ${n}…`;
      try {
        const res = await api(base + n);
        const b = await res.json().catch(() => ({}));
        if (!res.ok) { status.className = "bad small"; status.textContent = detailText(b, res.status); draw(null); return; }
        if (!b.table) {
          status.className = "bad small";
          status.textContent = `the meter answered ${(b.exchange.response_codes || []).join(", ")}`;
          draw(null); return;
        }
        status.className = "muted small";
        status.textContent = `Table ${b.table.table} ${b.table.name}: ${b.table.count} bytes; edit and write`;
        draw(b.table);
      } finally { load.disabled = false; }
    }

    function changes() {
      const out = {}, bad = [];
      for (const [path, { f, input: i }] of inputs) {
        if (f.kind === "bool") { if (i.checked !== !!f.value) out[path] = i.checked; continue; }
        const v = i.value;
        const before = f.kind === "set" ? JSON.stringify(f.value) : (f.value === null ? "" : String(f.value));
        if (v === before) continue;
        if (v.trim() === "" && f.kind !== "text" && f.kind !== "binary") { bad.push(path); continue; }
        if (f.kind === "int") out[path] = /^[+-]?\d+$/.test(v.trim()) ? Number(v.trim()) : v;
        else if (f.kind === "set") { try { out[path] = JSON.parse(v); } catch (err) { bad.push(path); } }
        else out[path] = v;
      }
      return { out, bad };
    }

    async function send() {
      if (!current) return;
      const { out, bad } = changes();
      if (bad.length) { status.className = "bad small"; status.textContent = `not sent — empty or malformed: ${bad.join(", ")}`; return; }
      if (!Object.keys(out).length) { status.className = "muted small"; status.textContent = "nothing changed"; return; }
      const names = Object.keys(out);
      const what = `Write table ${current.table}`;
      if (window.c1222Auth && !(await window.c1222Auth.confirm(`${what}?`,
          `${what} (${names.length} field${names.length > 1 ? "s" : ""}: ${names.slice(0, 4).join(", ")}` +
          `${names.length > 4 ? ", …" : ""}) on meter ${apTitle}. This acts on the meter (and is recorded in the audit log).`,
          "Write changes"))) return;
      write.disabled = true;
      status.className = "muted small"; status.textContent = "writing…";
      try {
        const res = await api(base + current.table, { method: "PUT", body: JSON.stringify({ values: out }),
          headers: { "Content-Type": "application/json", Accept: "application/json" } });
        const b = await res.json().catch(() => ({}));
        if (!res.ok) { status.className = "bad small"; status.textContent = `HTTP ${res.status} — ${detailText(b, res.status)}`; return; }
        const codes = b.exchange.response_codes || [];
        const ok = codes.every((c) => c === "ok");
        status.className = ok ? "ok small" : "bad small";
        status.textContent = `${b.written.full ? "full write" : `partial write at ${b.written.offset}`} of ${b.written.count} bytes: ${codes.join(", ")}`;
        if (ok) draw(b.table);
      } finally { write.disabled = !current; }
    }

    load.addEventListener("click", read);
    write.addEventListener("click", send);
    number.addEventListener("keydown", (e) => { if (e.key === "Enter") read(); });
    return el("section", { class: "card editor", "data-testid": "table-editor" },
      el("div", { class: "card-head" }, el("h2", { text: "Table editor" }),
         el("span", { class: "muted small", text: "fields decoded from the meter's table; writes only what changed" })),
      el("div", { class: "fields" }, el("label", { class: "field" }, el("span", { text: "table" }), number), load, write),
      status, body);
  }

  // ------------------------------------------------------------------ load profile and events

  function operatorCard(apTitle) {
    const enc = encodeURIComponent(apTitle);
    const status = el("dl", { class: "facts", "data-testid": "read-status" });
    const chartBox = el("div", { class: "chart lp-chart", "data-testid": "lp-chart", "data-points": "0", "data-flagged": "0" });
    const events = el("tbody", {});
    const eventsBox = el("div", { class: "table-wrap events-wrap" },
      el("table", { class: "values-table", "data-testid": "event-list" },
        el("thead", {}, el("tr", {}, ...["Time", "#", "Event", "User", "Argument"].map((h) => el("th", { text: h })))), events));
    let chart = null, resize = null;

    async function loadStatus() {
      const res = await api(`/api/nodes/${enc}`);
      if (!res.ok) return;
      const n = await res.json();
      const s = n.read_status || {};
      const rows = [["Last read", when(s.last_success)],
                    ["Last failure", s.last_failure ? `${when(s.last_failure)}: ${s.last_error || "?"}` : "none"],
                    ["Failures in a row", String(s.consecutive_failures || 0)]];
      if (s.over_limit) rows.push(["Flagged", s.over_limit]);
      status.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }),
        el("dd", { class: k === "Last failure" && s.last_failure ? "bad" : "", text: v })]));
    }

    async function loadProfile() {
      const res = await api(`/api/nodes/${enc}/readings?kind=interval&newest_first=true&limit=${LP_POINTS * 4}`);
      if (!res.ok) return;
      // channel ch0 drawn; an interval whose status (common or any channel's) is set is marked
      const byTime = new Map();
      for (const row of await res.json()) {
        const t = Date.parse(row.time) / 1000;
        const cur = byTime.get(t) || { value: null, status: 0, name: row.name };
        if (row.name === "ch0" || cur.value === null) { cur.value = row.value; cur.name = row.name; }
        const x = row.extra && typeof row.extra === "object" ? row.extra : {};
        cur.status |= (x.status || 0) | (x.channel_status || 0);
        byTime.set(t, cur);
      }
      const ts = [...byTime.keys()].sort((a, b) => a - b).slice(-LP_POINTS);
      const values = ts.map((t) => byTime.get(t).value);
      const flagged = ts.map((t, i) => (byTime.get(t).status ? values[i] : null));
      chartBox.dataset.points = String(ts.length);
      chartBox.dataset.flagged = String(flagged.filter((v) => v !== null).length);
      chartBox.dataset.channel = ts.length ? byTime.get(ts[0]).name : "";
      if (!ts.length) { chartBox.replaceChildren(el("p", { class: "muted small", text: "No load-profile intervals collected yet (Read now with logs, or wait for the collector)." })); return; }
      if (typeof uPlot === "undefined") return;
      if (!chart) {
        chartBox.replaceChildren();
        const axis = { stroke: "#64748b", grid: { stroke: "#eef2f7", width: 1 }, ticks: { stroke: "#e2e8f0", width: 1 } };
        chart = new uPlot({
          width: Math.max(chartBox.clientWidth, 240), height: 200, legend: { show: false },
          cursor: { drag: { x: false, y: false } },
          series: [{}, { label: "Interval", stroke: "#0f766e", width: 1.4, fill: "rgba(15,118,110,0.08)", points: { show: false }, paths: uPlot.paths.stepped({ align: 1 }) },
                   { label: "Status set", stroke: "#dc2626", width: 0, points: { show: true, size: 7, fill: "#dc2626" } }],
          axes: [{ ...axis }, { ...axis, size: 60 }],
        }, [[], [], []], chartBox);
        resize = new ResizeObserver(() => { if (chart && chartBox.clientWidth) chart.setSize({ width: chartBox.clientWidth, height: 200 }); });
        resize.observe(chartBox);
      }
      chart.setData([ts, values, flagged]);
    }

    async function loadEvents() {
      const res = await api(`/api/nodes/${enc}/events?limit=${EVENTS_SHOWN}`);
      if (!res.ok) return;
      const list = await res.json();
      events.replaceChildren(...(list.length ? list.map((e) => el("tr", { "data-testid": "event-row", "data-code": String(e.code) },
        el("td", { text: when(e.time) }), el("td", { class: "muted", text: e.seq ?? "" }),
        el("td", { text: e.name }), el("td", { class: "muted", text: e.user_id ?? "" }),
        el("td", { class: "tv-hex", text: spaced(e.argument || "") })))
        : [el("tr", {}, el("td", { colspan: "5", class: "muted small", text: "No events collected yet." }))]));
    }

    const refresh = el("button", { type: "button", class: "ghost", "data-testid": "logs-refresh", text: "Read logs now" });
    refresh.addEventListener("click", async () => {
      refresh.disabled = true;
      try { await api(`/api/nodes/${enc}/collect?logs=true`, { method: "POST" }); } finally { refresh.disabled = false; load(); }
    });
    function load() { loadStatus(); loadProfile(); loadEvents(); }
    const card = el("section", { class: "card operator", "data-testid": "operator-card" },
      el("div", { class: "card-head" }, el("h2", { text: "Read status, load profile and events" }), refresh),
      status,
      el("h3", { text: "Load profile" }),
      el("span", { class: "legend small" }, el("i", { class: "sw lp" }), "interval value ", el("i", { class: "sw flag" }), "interval status set"),
      chartBox,
      el("h3", { text: "Event log" }), eventsBox);
    load();
    const tick = setInterval(() => { if (!document.body.contains(card)) { clearInterval(tick); if (resize) resize.disconnect(); if (chart) chart.destroy(); return; } load(); }, 15000);
    return card;
  }

  // ------------------------------------------------------------------ alarms

  const navAlarm = el("a", { href: "#/", class: "alarm-link", "data-testid": "nav-alarms", hidden: true },
    "Alarms ", el("span", { class: "alarm-badge", "data-testid": "alarm-badge", text: "0" }));
  let alarms = [];
  async function pollAlarms() {
    try {
      const res = await api("/api/alarms");
      if (!res.ok) return;
      alarms = await res.json();
      navAlarm.hidden = alarms.length === 0;
      navAlarm.querySelector(".alarm-badge").textContent = String(alarms.length);
      drawAlarmList();
    } catch (err) { /* the head-end is restarting: the next poll tells */ }
  }
  function drawAlarmList() {
    const list = document.querySelector("[data-testid=alarm-list]");
    if (!list) return;
    list.hidden = alarms.length === 0;
    list.querySelector("tbody").replaceChildren(...alarms.map((a) => el("tr", { "data-testid": "alarm-row", "data-ap-title": a.ap_title },
      el("td", {}, el("a", { href: `#/node/${encodeURIComponent(a.ap_title)}`, text: a.ap_title })),
      el("td", { class: "bad", text: a.reason || "?" }),
      el("td", { class: "muted", text: `${a.read_status.consecutive_failures} in a row, last ${when(a.read_status.last_failure)}` }))));
  }
  function alarmCard() {
    return el("section", { class: "card alarms", "data-testid": "alarm-list", hidden: true },
      el("div", { class: "card-head" }, el("h2", { text: "Alarms" }), el("span", { class: "muted small", text: "meters whose last reads failed" })),
      el("div", { class: "table-wrap" }, el("table", { class: "values-table" }, el("tbody", {}))));
  }

  // ------------------------------------------------------------------ message log filters

  function filterBar() {
    const fields = [
      ["ap_title", "meter", "AP title", "wide"], ["service", "service", "read, write, identify…"],
      ["response_code", "code", "ok, sns…"], ["security_mode", "mode", "0-2"],
      ["since", "since", "2026-12-06T08:00"], ["until", "until", "ISO time"]];
    const inputs = {};
    const row = el("form", { class: "fields filter-bar", "data-testid": "message-filter" },
      ...fields.map(([k, label, ph, cls]) => {
        inputs[k] = el("input", { name: k, placeholder: ph, "data-testid": `filter-${k}`, spellcheck: "false", class: cls || "" });
        return el("label", { class: `field${cls ? " wide" : ""}` }, el("span", { text: label }), inputs[k]);
      }));
    const apply = el("button", { type: "submit", class: "ghost", "data-testid": "filter-apply", text: "Filter" });
    const note = el("span", { class: "muted small", "data-testid": "filter-status" });
    const pcap = el("a", { class: "ghost button", "data-testid": "export-pcap", text: "pcap", download: "c1222-messages.pcap" });
    const json = el("a", { class: "ghost button", "data-testid": "export-json", text: "JSON", download: "c1222-messages.json" });
    row.append(apply, el("span", { class: "muted small", text: "export:" }), pcap, json, note);
    function params() {
      const out = {};
      for (const [k, i] of Object.entries(inputs)) { const v = i.value.trim(); if (v) out[k] = v; }
      return out;
    }
    function links() {
      const p = new URLSearchParams(params());
      p.set("limit", "10000");
      pcap.href = `/api/messages/export?format=pcap&${p}`;
      json.href = `/api/messages/export?format=json&${p}`;
    }
    row.addEventListener("input", links);
    row.addEventListener("submit", async (e) => {
      e.preventDefault();
      links();
      const log = window.c1222MessageLog;
      if (!log) return;
      const res = await log.filter(params());
      if (res.ok) { note.className = "muted small"; note.textContent = res.headers.get("X-C1222-Scan-Complete") === "false" ? "scan stopped at its bound: narrow the filter" : ""; }
      else { const b = await res.json().catch(() => ({})); note.className = "bad small"; note.textContent = detailText(b, res.status); }
    });
    links();
    return row;
  }

  // ------------------------------------------------------------------ attach to the pages

  function attach() {
    const nav = document.querySelector(".nav");
    if (nav && !nav.contains(navAlarm)) nav.append(navAlarm);
    const hash = location.hash || "#/";
    const m = hash.match(/^#\/node\/(.+)$/);
    const view = document.getElementById("view");
    if (m) {
      const grid = view.querySelector(".node-grid");
      if (grid && !view.querySelector("[data-testid=operator-card]")) {
        const apTitle = decodeURIComponent(m[1]);
        // the editor reads the meter (operator) and writes it (engineer): shown by role
        const may = (window.c1222Auth && window.c1222Auth.may) || {};
        const card = operatorCard(apTitle);
        grid.after(card);
        if (may.tables_read) card.after(editor(apTitle, may.tables_write === true));
      }
    } else if (hash.startsWith("#/messages")) {
      const head = view.querySelector(".card.log .card-head");
      if (head && !view.querySelector("[data-testid=message-filter]")) head.after(filterBar());
    } else if (!hash.startsWith("#/network")) {
      const meters = view.querySelector(".card");
      if (meters && !view.querySelector("[data-testid=alarm-list]")) { meters.before(alarmCard()); drawAlarmList(); }
    }
  }

  const view = document.getElementById("view");
  if (view) new MutationObserver(attach).observe(view, { childList: true });
  attach();
  pollAlarms();
  setInterval(pollAlarms, ALARM_POLL_MS);
})();
