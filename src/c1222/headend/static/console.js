// The head-end console: the registered meters, a page per meter with a button per EPSEM
// service, the message log (each message as a tree beside its bytes) and a readings chart.
// Live over server-sent events (/api/events); no build step, no framework.
(() => {
  "use strict";

  // ------------------------------------------------------------------ constants

  const SERVICES = [
    { group: "Session", items: [
      { name: "identify", label: "Identify" },
      { name: "logon", label: "Logon", fields: [
        { key: "user_id", label: "user id", type: "number", placeholder: "2" },
        { key: "user", label: "user", placeholder: "headend", size: 10 },
        { key: "timeout", label: "time-out", type: "number", placeholder: "60" }] },
      { name: "security", label: "Security", fields: [
        { key: "user_id", label: "user id", type: "number", placeholder: "auto" },
        { key: "password", label: "password", type: "password", placeholder: "head-end's" }] },
      { name: "logoff", label: "Logoff" },
      { name: "wait", label: "Wait", fields: [
        { key: "seconds", label: "seconds", type: "number", value: "10" }] },
      { name: "terminate", label: "Terminate", danger: true },
      { name: "disconnect", label: "Disconnect", danger: true },
    ] },
    { group: "Tables", items: [
      { name: "read", label: "Read", fields: [
        { key: "table", label: "table", type: "number", value: "0", required: true },
        { key: "offset", label: "offset", type: "number", placeholder: "full" },
        { key: "count", label: "count", type: "number", placeholder: "full" }] },
      { name: "write", label: "Write", danger: true, fields: [
        { key: "table", label: "table", type: "number", placeholder: "#", required: true },
        { key: "offset", label: "offset", type: "number", placeholder: "full" },
        { key: "data", label: "data", placeholder: "hex", wide: true, required: true }] },
    ] },
    { group: "Procedures", items: [
      { name: "procedure", label: "Procedure", fields: [
        { key: "number", label: "number", type: "number", value: "0" },
        { key: "params", label: "params", placeholder: "hex" },
        { key: "mfg", label: "mfg", type: "checkbox" },
        { key: "seq", label: "seq", type: "number", placeholder: "1" }] },
      { name: "procedure", id: "remote-disconnect", label: "Remote disconnect", danger: true,
        fixed: { number: 0, params: "00", mfg: true },
        note: "manufacturer procedure 0, parameter 00: opens the load switch" },
      { name: "procedure", id: "remote-connect", label: "Remote connect",
        fixed: { number: 0, params: "01", mfg: true },
        note: "manufacturer procedure 0, parameter 01: closes it again" },
    ] },
    { group: "Network", items: [
      { name: "deregister", label: "Deregister", danger: true, fields: [
        { key: "ap_title", label: "AP title", placeholder: "this node", wide: true }] },
      { name: "resolve", label: "Resolve", fields: [
        { key: "ap_title", label: "AP title", placeholder: "this node", wide: true }] },
      { name: "trace", label: "Trace", fields: [
        { key: "ap_title", label: "AP title", placeholder: "this node", wide: true }] },
    ] },
  ];

  const PRESENT = [
    { key: "voltage", label: "Voltage", unit: "V", digits: 1 },
    { key: "current", label: "Current", unit: "A", digits: 3 },
    { key: "active_power", label: "Active power", unit: "W", digits: 0 },
    { key: "apparent_power", label: "Apparent power", unit: "VA", digits: 0 },
    { key: "power_factor", label: "Power factor", unit: "", digits: 3 },
  ];
  const NODE_TYPES = { 0x01: "relay", 0x02: "master relay", 0x04: "host", 0x08: "notification host",
                       0x10: "authentication host", 0x20: "end device" };
  const CHART_POINTS = 600;      // snapshots kept in the chart
  const CHART_MIN_SPAN = 300;    // seconds: the time axis is never narrower
  const HEX_DUMP_MAX = 4096;     // bytes drawn in a hex dump (the rest is summarised)
  const ROW_HEX_MAX = 12;        // bytes shown beside a tree row
  const LOG_ROWS = 200;

  // ------------------------------------------------------------------ small helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const api = (path) => fetch(path, { headers: { Accept: "application/json" } });

  const { el } = window.c1222Dom;

  function refs(root) {
    const out = {};
    root.querySelectorAll("[data-ref]").forEach((n) => { out[n.dataset.ref] = n; });
    return out;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function clock(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function dateTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(iso)}`;
  }
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return dateTime(iso);
  }
  function fmt(v, digits) {
    return v === undefined || v === null ? "—" : Number(v).toFixed(digits);
  }
  const spaced = (hex) => hex.replace(/(..)(?=.)/g, "$1 ");

  function nodeType(t) {
    const names = Object.entries(NODE_TYPES).filter(([bit]) => t & bit).map(([, n]) => n);
    return `0x${t.toString(16).padStart(2, "0")}${names.length ? " " + names.join(", ") : ""}`;
  }
  function ascii(hex) {
    let s = "";
    for (let i = 0; i < hex.length; i += 2) {
      const c = parseInt(hex.slice(i, i + 2), 16);
      if (c < 32 || c > 126) return "";
      s += String.fromCharCode(c);
    }
    return s;
  }

  // ------------------------------------------------------------------ live status & events

  const statusEl = $("#status"), statusText = $("#status-text");
  function setStatus(state, text) {
    statusEl.className = `status ${state}`;
    statusText.textContent = text;
  }

  let source = null;
  function listen(query, handlers, onOpen) {
    if (source) source.close();
    const es = new EventSource(`/api/events${query}`);
    source = es;
    let opened = false;
    setStatus("waiting", "connecting");
    es.addEventListener("hello", () => {
      setStatus("live", "live");
      if (opened && onOpen) onOpen();   // a reconnect: catch up on what was missed
      opened = true;
    });
    es.onerror = () => { if (source === es) setStatus("down", "reconnecting"); };
    for (const [type, fn] of Object.entries(handlers)) {
      es.addEventListener(type, (e) => { if (source === es) fn(JSON.parse(e.data)); });
    }
  }

  // ------------------------------------------------------------------ tree and hex

  // label tokens: "key=value" pairs at the top level (values may hold {...} or [...])
  function tokens(label) {
    const out = [];
    let depth = 0, cur = "";
    for (const ch of label) {
      if (ch === "{" || ch === "[") depth++;
      if (ch === "}" || ch === "]") depth--;
      if (ch === " " && depth === 0) { if (cur) out.push(cur); cur = ""; } else cur += ch;
    }
    if (cur) out.push(cur);
    return out;
  }

  function labelNode(label) {
    const span = el("span", { class: "label" });
    tokens(label).forEach((tok, i) => {
      if (i) span.append(" ");
      const eq = tok.indexOf("=");
      if (eq > 0 && !tok.startsWith("(")) {
        const k = tok.slice(0, eq), v = tok.slice(eq + 1);
        const cls = (k === "service" || k === "response_code") ? "v strong" : "v";
        const code = k === "response_code" ? (v === "ok" ? " ok" : " bad") : "";
        span.append(el("span", { class: "k", text: k }), "=",
                    el("span", { class: cls + code, text: v }));
      } else {
        span.append(el("span", { class: i === 0 ? "head" : "v", text: tok }));
      }
    });
    return span;
  }

  function renderTree(container, rows, dump, exact) {
    container.replaceChildren();
    if (!rows) {
      container.append(el("p", { class: "muted small", text: "(not decoded)" }));
      return;
    }
    for (const row of rows) {
      const bytes = row.hex.length / 2;
      const shown = bytes > ROW_HEX_MAX ? spaced(row.hex.slice(0, ROW_HEX_MAX * 2)) + " …"
                                         : spaced(row.hex);
      const line = el("div", { class: `row d${row.depth}`, "data-testid": "tree-row",
                               dataset: { offset: row.offset, length: row.length } },
        labelNode(row.label),
        el("span", { class: "bytes", title: `${bytes} byte${bytes === 1 ? "" : "s"} at offset ${row.offset}`,
                     text: shown }));
      if (exact && dump) {
        line.addEventListener("mouseenter", () => highlight(dump, row.offset, row.length));
        line.addEventListener("mouseleave", () => highlight(dump, 0, 0));
      }
      container.append(line);
    }
  }

  function renderHex(pre, hex) {
    pre.replaceChildren();
    pre.dataset.hex = hex || "";
    if (!hex) return;
    const n = hex.length / 2;
    const shown = Math.min(n, HEX_DUMP_MAX);
    const frag = document.createDocumentFragment();
    for (let line = 0; line < shown; line += 16) {
      frag.append(el("span", { class: "off", text: line.toString(16).padStart(4, "0") + "  " }));
      for (let i = line; i < Math.min(line + 16, shown); i++) {
        frag.append(el("span", { class: "b", "data-i": i, text: hex.slice(2 * i, 2 * i + 2) }));
        frag.append(i % 16 === 7 ? "  " : " ");
      }
      frag.append("\n");
    }
    if (n > shown) frag.append(el("span", { class: "muted", text: `… ${n - shown} more bytes` }));
    pre.append(frag);
  }

  function highlight(pre, offset, length) {
    pre.querySelectorAll(".b.hl").forEach((b) => b.classList.remove("hl"));
    for (let i = offset; i < offset + length && i < HEX_DUMP_MAX; i++) {
      const b = pre.querySelector(`.b[data-i="${i}"]`);
      if (b) b.classList.add("hl");
    }
  }

  // ------------------------------------------------------------------ message log

  function messageLog(r, apTitle) {
    const state = { rows: new Map(), newest: 0, oldest: null, selected: null, timer: null };

    function row(m) {
      const tr = el("tr", { class: `msg ${m.direction}`, "data-testid": "message-row",
                            dataset: { id: m.id, direction: m.direction }, tabindex: "0" },
        el("td", { class: "id muted", text: `#${m.id}` }),
        el("td", { class: "time", text: clock(m.time) }),
        el("td", { class: "dir", title: m.direction === "out" ? "sent by the head-end" : "received",
                   text: m.direction === "out" ? "→ out" : "← in" }),
        apTitle ? null : el("td", { class: "peer muted", text: m.ap_title ? shortTitle(m.ap_title) : m.peer }),
        el("td", { class: "summary", text: m.summary }),
        el("td", { class: "size muted", text: `${m.size} B` }));
      tr.addEventListener("click", () => select(m.id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") select(m.id); });
      if (state.selected === m.id) tr.classList.add("selected");
      return tr;
    }

    function add(list, atTop) {
      const frag = document.createDocumentFragment();
      for (const m of list) {
        if (state.rows.has(m.id)) continue;
        const tr = row(m);
        state.rows.set(m.id, tr);
        frag.append(tr);
        state.newest = Math.max(state.newest, m.id);
        state.oldest = state.oldest === null ? m.id : Math.min(state.oldest, m.id);
      }
      if (atTop) r.messages.prepend(frag); else r.messages.append(frag);
      while (state.rows.size > LOG_ROWS && atTop) {   // keep the newest rows
        const last = r.messages.lastElementChild;
        state.rows.delete(Number(last.dataset.id));
        last.remove();
        state.oldest = Number(r.messages.lastElementChild.dataset.id);
      }
    }

    const query = (extra) => {
      const p = new URLSearchParams(extra);
      if (apTitle) p.set("ap_title", apTitle);
      for (const [k, v] of Object.entries(state.filter || {})) if (v !== "" && v !== undefined) p.set(k, v);
      return `/api/messages?${p}`;
    };

    async function refresh() {
      const res = await api(query({ limit: 50 }));
      if (!res.ok) return;
      const list = (await res.json()).filter((m) => m.id > state.newest);
      add(list, true);
    }

    async function older() {
      if (state.oldest === null) return;
      const res = await api(query({ limit: 50, before_id: state.oldest }));
      if (!res.ok) return;
      const list = await res.json();
      add(list, false);
      if (list.length < 50) r.older.hidden = true;
    }

    async function select(id) {
      state.selected = id;
      state.rows.forEach((tr, k) => tr.classList.toggle("selected", k === id));
      const res = await api(`/api/messages/${id}`);
      if (!res.ok) { r["detail-head"].textContent = `message ${id}: HTTP ${res.status}`; return; }
      const m = await res.json();
      if (state.selected !== id) return;
      r["detail-head"].replaceChildren(
        el("b", { text: `#${m.id} ${m.direction === "out" ? "sent" : "received"}` }),
        ` ${dateTime(m.time)} · ${m.transport} ${m.peer} · ${m.size} bytes`,
        m.decrypted ? " · decrypted" : "", m.error ? el("span", { class: "bad", text: ` · ${m.error}` }) : "");
      r.detail.dataset.id = String(m.id);
      renderHex(r["detail-hex"], m.hex);
      renderTree(r["detail-tree"], m.tree, r["detail-hex"], m.exact || m.decrypted);
      // tables.js shows the tables it read or wrote as values
      window.dispatchEvent(new CustomEvent("c1222:message", { detail: { message: m, container: r.detail } }));
    }

    r.older.addEventListener("click", older);
    return {
      async load() {
        const res = await api(query({ limit: 100 }));
        if (res.ok) add(await res.json(), true);
        r.older.hidden = state.rows.size < 100;
      },
      // many messages arrive in bursts (a collection is two): fetch them together
      changed() {
        if (state.timer) return;
        state.timer = setTimeout(() => { state.timer = null; refresh(); }, 250);
      },
      refresh,
      // new filter (the message log page's filter bar, tables.js): reload from the newest
      async filter(f) {
        state.filter = f;
        state.rows.clear(); state.newest = 0; state.oldest = null;
        r.messages.replaceChildren();
        r.older.hidden = false;
        const res = await api(query({ limit: 100 }));
        if (res.ok) add(await res.json(), true);
        r.older.hidden = state.rows.size < 100;
        return res;
      },
    };
  }

  function shortTitle(t) {
    const parts = t.split(".");
    return parts.length > 4 ? "…" + parts.slice(-3).join(".") : t;
  }

  // ------------------------------------------------------------------ views

  const view = $("#view");
  let teardown = () => {};

  function mount(id) {
    teardown();
    teardown = () => {};
    const frag = document.getElementById(id).content.cloneNode(true);
    view.replaceChildren(frag);
    window.scrollTo(0, 0);
    return refs(view);
  }

  function setNav(name) {
    document.querySelectorAll(".nav a[data-nav]").forEach((a) => {
      a.classList.toggle("active", a.dataset.nav === name);
    });
  }

  // ---------------------------------------------------------------- the meters

  function metersView() {
    setNav("meters");
    document.title = "Meters · c1222 head-end";
    const r = mount("tpl-meters");
    const nodes = new Map();

    function row(n) {
      const v = (n.latest && n.latest.values) || {};
      const href = `#/node/${encodeURIComponent(n.ap_title)}`;
      const tr = el("tr", { "data-testid": "node-row", dataset: { apTitle: n.ap_title, state: n.state } },
        el("td", {}, el("a", { href, class: "title", text: n.ap_title })),
        el("td", { text: n.serial_number || "—" }),
        el("td", { class: "muted", text: n.native_address }),
        el("td", {}, badge(n.state, n.connected)),
        el("td", { class: "muted", dataset: { ago: n.last_seen || "" }, text: ago(n.last_seen) }),
        el("td", { class: "num", "data-testid": "node-voltage", text: v.voltage === undefined ? "—" : `${fmt(v.voltage, 1)} V` }),
        el("td", { class: "num", "data-testid": "node-power", text: v.active_power === undefined ? "—" : `${fmt(v.active_power, 0)} W` }),
        el("td", { class: "num", text: fmt(v.power_factor, 3) }));
      tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.hash = href; });
      return tr;
    }

    // many meters report every few seconds: draw the table at most four times a second
    let pending = null;
    function render() {
      if (pending === null) pending = setTimeout(() => { pending = null; draw(); }, 250);
    }

    function draw() {
      const list = [...nodes.values()];
      r.rows.replaceChildren(...list.map(row));
      r.empty.hidden = list.length > 0;
      const on = list.filter((n) => n.state === "registered").length;
      r.count.textContent =
        list.length ? `${on} registered${list.length > on ? `, ${list.length - on} deregistered` : ""}` : "";
    }

    async function load() {
      const res = await api("/api/nodes");
      if (!res.ok) return;
      nodes.clear();
      for (const n of await res.json()) nodes.set(n.ap_title, n);
      draw();
    }

    async function one(apTitle) {
      const res = await api(`/api/nodes/${encodeURIComponent(apTitle)}`);
      if (res.ok) { nodes.set(apTitle, await res.json()); render(); }
    }

    listen("?types=registered,deregistered,reading", {
      registered: (e) => { nodes.set(e.node.ap_title, { ...(nodes.get(e.node.ap_title) || {}), ...e.node, connected: true }); render(); one(e.node.ap_title); },
      deregistered: (e) => { const n = nodes.get(e.ap_title); if (n) { n.state = "deregistered"; n.connected = false; render(); } },
      reading: (e) => {
        const n = nodes.get(e.ap_title);
        if (!n) { one(e.ap_title); return; }
        n.latest = { time: e.time, values: e.values };
        n.last_seen = new Date().toISOString();
        render();
      },
    }, load);
    load();
    const tick = setInterval(() => {
      view.querySelectorAll("[data-ago]").forEach((td) => { td.textContent = ago(td.dataset.ago); });
    }, 1000);
    teardown = () => { clearInterval(tick); if (pending !== null) clearTimeout(pending); };
  }

  function badge(state, connected) {
    const text = state === "registered" ? (connected ? "registered" : "registered · offline") : state;
    return el("span", { class: `badge ${state}${connected ? "" : " idle"}`, text });
  }

  // ---------------------------------------------------------------- one meter

  function nodeView(apTitle) {
    setNav("meters");
    document.title = `${apTitle} · c1222 head-end`;
    const r = mount("tpl-node");
    const enc = encodeURIComponent(apTitle);
    r.title.textContent = apTitle;
    let node = null;

    function renderNode() {
      if (!node) return;
      r.subtitle.textContent = `serial ${node.serial_number || "—"} · ${node.native_address}`;
      r.state.replaceChildren(badge(node.state, node.connected));
      r.state.dataset.state = node.state;
      const dc = ascii(node.device_class);
      const facts = [
        ["Serial number", node.serial_number || "—"],
        ["Native address", node.native_address],
        ["Node type", nodeType(node.node_type)],
        ["Device class", node.device_class ? `${node.device_class}${dc ? ` (${dc})` : ""}` : "—"],
        ["Registration period", `${node.registration_period} s`],
        ["Registered", dateTime(node.registered_at)],
        ["Last seen", dateTime(node.last_seen)],
        ["Association", node.connected ? "open" : "closed"],
      ];
      r.facts.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
      renderValues();
    }

    function renderValues() {
      const v = (node && node.latest && node.latest.values) || {};
      const cells = PRESENT.map((q) => el("div", { class: "value", "data-testid": `value-${q.key}` },
        el("span", { class: "vlabel", text: q.label }),
        el("span", { class: "vnum", text: fmt(v[q.key], q.digits) }, q.unit ? el("small", { text: ` ${q.unit}` }) : null)));
      const regs = (node && node.registers && node.registers.values) || {};
      if (regs.wh_delivered !== undefined) {
        cells.push(el("div", { class: "value" }, el("span", { class: "vlabel", text: "Energy delivered" }),
          el("span", { class: "vnum", text: fmt(regs.wh_delivered / 1000, 3) }, el("small", { text: " kWh" }))));
      }
      cells.push(el("div", { class: "value when" }, el("span", { class: "vlabel", text: "Measured" }),
        el("span", { class: "vnum small", text: node && node.latest ? clock(node.latest.time) : "—" })));
      r.values.replaceChildren(...cells);
    }

    let nodeLoaded = 0;
    async function loadNode() {
      nodeLoaded = Date.now();
      const res = await api(`/api/nodes/${enc}`);
      if (res.status === 404) {
        r.subtitle.textContent = "not known to this head-end";
        return;
      }
      if (res.ok) { node = await res.json(); renderNode(); }
    }

    // -------------------------------------------------------------- services
    // Only the services the signed-in role may use (auth.js; the API refuses the rest).
    const allowed = window.c1222Auth ? window.c1222Auth.allows : () => true;
    for (const group of SERVICES) {
      const items = group.items.filter(allowed);
      if (!items.length) continue;
      const box = el("div", { class: "svc-group" }, el("h3", { text: group.group }));
      for (const s of items) box.append(serviceForm(s));
      r.services.append(box);
    }
    if (window.c1222Auth && !window.c1222Auth.may.collect) r.collect.hidden = true;

    function serviceForm(s) {
      const id = s.id || s.name;
      const inputs = {};
      const button = el("button", { type: "submit", class: s.danger ? "svc danger" : "svc",
                                    "data-testid": `service-${id}`, text: s.label });
      const fields = (s.fields || []).map((f) => {
        const input = el("input", {
          type: f.type === "checkbox" ? "checkbox" : (f.type === "number" ? "number" : (f.type || "text")),
          name: f.key, placeholder: f.placeholder || "", value: f.value,
          min: f.type === "number" ? "0" : null, spellcheck: "false", autocomplete: "off",
          "data-testid": `param-${id}-${f.key}`, "aria-label": `${s.label} ${f.label}`,
          class: f.wide ? "wide" : (f.type === "number" ? "narrow" : null) });
        inputs[f.key] = { input, f };
        return el("label", { class: f.type === "checkbox" ? "field check" : `field${f.wide ? " wide" : ""}` },
          el("span", { text: f.label }), input);
      });
      const form = el("form", { class: "svc-row", "data-service": id }, button,
        fields.length ? el("div", { class: "fields" }, ...fields)
                      : el("span", { class: "note muted", text: s.note || "" }));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const params = { ...(s.fixed || {}) };
        const missing = [];
        for (const [k, { input, f }] of Object.entries(inputs)) {
          if (f.type === "checkbox") { if (input.checked) params[k] = true; continue; }
          const v = input.value.trim();
          // a number field holding text reads as "" (validity.badInput): never a default
          if (v === "" && (f.required || (input.validity && input.validity.badInput))) missing.push(f.label);
          if (v === "") continue;
          params[k] = f.type === "number" ? Number(v) : v;
        }
        if (missing.length) {
          r.status.className = "result-status bad";
          r.status.textContent = `${s.label}: not sent — ${missing.join(", ")}: empty or not a number`;
          return;
        }
        run(s, params, button);
      });
      return form;
    }

    let busy = 0;
    async function run(s, params, button) {
      // Commands that change the meter or drop it ask first, naming it (auth.js).
      if (window.c1222Auth && !(await window.c1222Auth.confirmCommand(s, apTitle, params))) {
        r.status.className = "result-status";
        r.status.textContent = `${s.label}: cancelled.`;
        return;
      }
      busy += 1;
      button.disabled = true;
      button.classList.add("busy");
      r.status.className = "result-status pending";
      r.status.textContent = `${s.label}: sending…`;
      const started = performance.now();
      try {
        const res = await fetch(`/api/nodes/${enc}/services/${s.name}`, {
          method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(params),
        });
        const body = await res.json();
        const ms = Math.round(performance.now() - started);
        if (res.status === 200 || res.status === 502) {
          showExchange(s, body, res.status, ms);
        } else {
          const detail = typeof body.detail === "string" ? body.detail
            : (body.detail || []).map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
          r.status.className = "result-status bad";
          r.status.textContent = `${s.label}: HTTP ${res.status} — ${detail}`;
        }
      } catch (err) {
        r.status.className = "result-status bad";
        r.status.textContent = `${s.label}: ${err}`;
      } finally {
        busy -= 1;
        button.disabled = false;
        button.classList.remove("busy");
      }
    }

    function showExchange(s, x, status, ms) {
      const codes = x.response_codes || [];
      const ok = status === 200 && codes.every((c) => c === "ok");
      r.status.className = `result-status ${status !== 200 ? "bad" : (ok ? "ok" : "warn")}`;
      r.status.replaceChildren(el("b", { text: s.label }),
        status === 200 ? ` · ${codes.join(", ") || "no services"} · ${ms} ms`
                       : ` · no answer: ${x.error || "HTTP " + status}`);
      r.result = x;
      const result = view.querySelector("[data-testid=result]");
      result.dataset.service = x.service;
      result.dataset.codes = codes.join(",");
      // A decrypted (mode 2) tree has the offsets and lengths of the bytes sent, MAC included,
      // so hovering a row still marks its bytes (the ciphertext of a service row).
      r["request-size"].textContent = `${x.request.hex.length / 2} bytes · ${x.request.summary || ""}` +
        (x.request.decrypted ? " · decrypted" : "");
      renderHex(r["request-hex"], x.request.hex);
      renderTree(r["request-tree"], x.request.tree, r["request-hex"], x.request.exact || x.request.decrypted);
      if (x.response) {
        r["response-size"].textContent = `${x.response.hex.length / 2} bytes · ${x.response.summary || ""}` +
          (x.response.decrypted ? " · decrypted" : "");
        renderHex(r["response-hex"], x.response.hex);
        renderTree(r["response-tree"], x.response.tree, r["response-hex"], x.response.exact || x.response.decrypted);
      } else {
        r["response-size"].textContent = "";
        renderHex(r["response-hex"], "");
        r["response-tree"].replaceChildren(el("p", { class: "bad small", text: x.error || "no response" }));
      }
      window.dispatchEvent(new CustomEvent("c1222:exchange", { detail: { exchange: x, container: result } }));
    }

    r.collect.addEventListener("click", async () => {
      r.collect.disabled = true;
      try {
        const res = await fetch(`/api/nodes/${enc}/collect`, { method: "POST" });
        if (res.ok) loadNode();
      } finally { r.collect.disabled = false; }
    });

    // -------------------------------------------------------------- chart
    const series = { t: [], p: [], v: [] };
    let chart = null, resize = null;

    function addPoint(t, values) {
      const n = series.t.length;
      if (n && t < series.t[n - 1]) return;
      if (n && t === series.t[n - 1]) { series.p[n - 1] = values.active_power ?? null; series.v[n - 1] = values.voltage ?? null; return; }
      series.t.push(t);
      series.p.push(values.active_power ?? null);
      series.v.push(values.voltage ?? null);
      if (series.t.length > CHART_POINTS) { series.t.shift(); series.p.shift(); series.v.shift(); }
    }

    function drawChart() {
      const box = r.chart;
      if (!chart) {
        const axis = { stroke: "#64748b", grid: { stroke: "#eef2f7", width: 1 },
                       ticks: { stroke: "#e2e8f0", width: 1 }, font: "12px system-ui, sans-serif" };
        chart = new uPlot({
          width: Math.max(box.clientWidth, 240), height: box.clientWidth < 500 ? 200 : 240,
          padding: [10, 4, 0, 4],
          cursor: { drag: { x: false, y: false }, points: { size: 6 } },
          legend: { show: false },
          // at least CHART_MIN_SPAN seconds wide, ending at the newest point
          scales: { x: { time: true, range: (u, min, max) => {
                      const hi = max ?? Date.now() / 1000;
                      return [Math.min(min ?? hi, hi - CHART_MIN_SPAN), hi];
                    } },
                    W: { range: (u, min, max) => [Math.min(0, min ?? 0), Math.max(100, (max ?? 0) * 1.15)] },
                    V: { range: (u, min, max) => [Math.floor(((min ?? 220) - 3) / 5) * 5, Math.ceil(((max ?? 220) + 3) / 5) * 5] } },
          series: [
            {},
            { label: "Active power", scale: "W", stroke: "#2563eb", width: 1.6,
              fill: "rgba(37, 99, 235, 0.08)", points: { show: false } },
            { label: "Voltage", scale: "V", stroke: "#d97706", width: 1.4, points: { show: false } },
          ],
          axes: [
            { ...axis },
            { ...axis, scale: "W", size: 58, values: (u, s) => s.map((x) => `${Math.round(x)} W`) },
            { ...axis, scale: "V", side: 1, size: 54, grid: { show: false },
              values: (u, s) => s.map((x) => `${Math.round(x)} V`) },
          ],
        }, [[], [], []], box);
        resize = new ResizeObserver(() => {
          if (chart && box.clientWidth) chart.setSize({ width: box.clientWidth, height: box.clientWidth < 500 ? 200 : 240 });
        });
        resize.observe(box);
      }
      chart.setData([series.t, series.p, series.v]);
      box.dataset.points = String(series.t.length);
    }

    async function loadReadings() {
      const res = await api(`/api/nodes/${enc}/readings?kind=present&newest_first=true&limit=${CHART_POINTS * 6}`);
      if (!res.ok) return;
      const byTime = new Map();
      for (const row of await res.json()) {
        const t = Date.parse(row.time) / 1000;
        if (!byTime.has(t)) byTime.set(t, {});
        byTime.get(t)[row.name] = row.value;
      }
      series.t.length = series.p.length = series.v.length = 0;
      [...byTime.keys()].sort((a, b) => a - b).forEach((t) => addPoint(t, byTime.get(t)));
      drawChart();
    }

    // -------------------------------------------------------------- log and live
    const log = messageLog(r, apTitle);
    listen(`?ap_title=${enc}`, {
      registered: (e) => { if (e.node.ap_title === apTitle) loadNode(); },
      deregistered: (e) => { if (e.ap_title === apTitle && node) { node.state = "deregistered"; node.connected = false; renderNode(); } },
      message: () => log.changed(),
      reading: (e) => {
        if (node) { node.latest = { time: e.time, values: e.values }; node.last_seen = new Date().toISOString(); renderNode(); }
        if (Date.now() - nodeLoaded > 5000) loadNode();   // registers and registry data
        addPoint(Date.parse(e.time) / 1000, e.values);
        drawChart();
      },
    }, () => { loadNode(); loadReadings(); log.refresh(); });
    loadNode();
    loadReadings();
    log.load();
    teardown = () => { if (resize) resize.disconnect(); if (chart) chart.destroy(); };
  }

  // ---------------------------------------------------------------- the whole log

  function messagesView() {
    setNav("messages");
    document.title = "Message log · c1222 head-end";
    const r = mount("tpl-messages");
    const log = messageLog(r, null);
    listen("?types=message", { message: () => log.changed() }, () => log.refresh());
    log.load();
    window.c1222MessageLog = log;   // the filter bar (tables.js) reloads it
    teardown = () => { if (window.c1222MessageLog === log) window.c1222MessageLog = null; };
  }

  // ---------------------------------------------------------------- the network
  // Relays and the nodes behind each (GET /api/network); Trace and Resolve of a node through
  // the master relay (POST /api/network/nodes/TITLE/trace|resolve), cached by the head-end.

  function networkView() {
    setNav("network");
    document.title = "Network · c1222 head-end";
    const r = mount("tpl-network");
    let busy = false, again = false;

    function when(result) {
      return result && result.time ? ` (${clock(result.time)})` : "";
    }

    function pathCell(n) {
      const p = n.path;
      if (!p) return el("span", { class: "muted", text: "not traced" });
      if (p.error) return el("span", { class: "bad", text: p.error + when(p) });
      return el("span", { class: "net-path", text: p.path.join(" › ") + when(p) });
    }

    function resolvedCell(n) {
      const x = n.resolved;
      if (!x) return el("span", { class: "muted", text: "—" });
      if (x.error) return el("span", { class: "bad", text: x.error + when(x) });
      return el("code", { text: x.native_address + when(x) });
    }

    async function act(n, action, button) {
      button.disabled = true;
      try {
        const res = await fetch(`/api/network/nodes/${encodeURIComponent(n.ap_title)}/${action}`,
                                { method: "POST", headers: { Accept: "application/json" } });
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          button.title = body.detail || `HTTP ${res.status}`;
        }
      } finally {
        button.disabled = false;
        load();
      }
    }

    function nodeRow(n, network) {
      const href = `#/node/${encodeURIComponent(n.ap_title)}`;
      const tr = el("tr", { "data-testid": "network-node", dataset: { apTitle: n.ap_title } },
        el("td", {}, el("a", { href, class: "title", text: n.ap_title })),
        el("td", { class: "muted", text: nodeType(n.node_type) }),
        el("td", { class: "muted", text: n.native_address }),
        el("td", { class: "net-wrap", "data-testid": "node-path" }, pathCell(n)),
        el("td", { class: "net-wrap", "data-testid": "node-resolved" }, resolvedCell(n)));
      const buttons = el("td", { class: "net-actions" });
      if (network) {
        for (const [action, label] of [["trace", "Trace"], ["resolve", "Resolve"]]) {
          const b = el("button", { type: "button", class: "ghost", text: label,
                                   "data-testid": `${action}-button` });
          b.addEventListener("click", () => act(n, action, b));
          buttons.append(b);
        }
      }
      tr.append(buttons);
      return tr;
    }

    function nodeTable(nodes, network) {
      return el("div", { class: "table-wrap" },
        el("table", { class: "nodes" },
          el("thead", {}, el("tr", {}, ...["AP title", "Type", "Native address", "Path", "Resolved", ""]
            .map((h) => el("th", { text: h })))),
          el("tbody", {}, ...nodes.map((n) => nodeRow(n, network)))));
    }

    function draw(net) {
      const m = net.master_relay;
      r.empty.hidden = !!m;
      r.master.replaceChildren();
      if (m) {
        const state = m.registered ? "registered" : "deregistered";
        r.master.append(...[
          el("span", { class: "k", text: "master relay " }),
          el("strong", { text: m.ap_title || "(title not known yet)" }),
          el("span", { class: "muted", text: ` at ${m.address} ` }),
          el("span", { class: `badge ${state}`, "data-testid": "master-state",
                       text: m.registered ? "registered" : "not registered" }),
          el("span", { class: "muted small", text:
            ` notifications: ${m.notifications.registered} registered, ` +
            `${m.notifications.deregistered} deregistered, ${m.notifications.refused} refused` }),
          m.last_error ? el("div", { class: "bad small", text: m.last_error }) : null,
        ].filter(Boolean));
      }
      r.relays.replaceChildren(...net.relays.map((relay) => el("section",
        { class: "net-relay", "data-testid": "network-relay", dataset: { apTitle: relay.ap_title } },
        el("h2", {}, el("span", { text: relay.master ? "Master relay " : "Relay " }),
           el("span", { class: "title", text: relay.ap_title }),
           el("span", { class: "muted small", text: relay.native_address ? `  ${relay.native_address}` : "" })),
        relay.nodes.length ? nodeTable(relay.nodes, true)
          : el("p", { class: "muted small", text: "no node behind it known" }))));
      r.direct.replaceChildren(...(net.direct.length ? [
        el("h2", { text: "Registered with the head-end directly" }), nodeTable(net.direct, false)] : []));
    }

    async function load() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        const res = await api("/api/network");
        if (res.ok) draw(await res.json());
      } finally {
        busy = false;
        if (again) { again = false; load(); }
      }
    }

    listen("?types=registered,deregistered", { registered: load, deregistered: load }, load);
    load();
    const tick = setInterval(load, 10000);   // the master relay's state and the read status
    teardown = () => clearInterval(tick);
  }

  // ------------------------------------------------------------------ routing

  function route() {
    const hash = location.hash || "#/";
    const m = hash.match(/^#\/node\/(.+)$/);
    if (m) nodeView(decodeURIComponent(m[1]));
    else if (hash.startsWith("#/messages")) messagesView();
    else if (hash.startsWith("#/network")) networkView();
    else metersView();
  }
  window.addEventListener("hashchange", route);
  // Views start once auth.js knows who is signed in (it shows the sign-in form otherwise).
  (window.c1222Auth ? window.c1222Auth.ready : Promise.resolve()).then(route);
})();
