// The in-home display page: live values over server-sent events, the 5-s power graph (uPlot),
// energy and the month's bill from /api/summary. No framework, no build step: the display is a
// small device and the page must load from it alone (no CDN).
(() => {
  "use strict";

  const T = window.IHD_I18N;
  const STEP = 5;                      // seconds per point (history.BUCKET)
  // Holes up to this long are bridged: the history fills longer spans from the meter's
  // register (history.FILL_MIN_SPAN = 45 s), so a shorter hole is only a feed that came late
  // or a meter sampled every 10-45 simulated seconds. Longer holes are drawn as gaps.
  const BRIDGE = 60;
  const DAY = 86400;
  const WINDOWS = [900, 3600, 21600, 86400];
  const STALE_S = 5;                   // same rule as the server: no sample for 5 s
  const SUMMARY_EVERY_MS = 10000;
  const $ = (id) => document.getElementById(id);

  const state = {
    lang: pickLang(),
    window: WINDOWS.includes(Number(localStorage.getItem("ihd.window")))
      ? Number(localStorage.getItem("ihd.window")) : 3600,
    tz: "Asia/Seoul",
    t: [],                             // every point of the last 24 h, oldest first
    p: [],
    live: null,                        // last /events "sample" body
    sampleSeenAt: null,                // Date.now() at which the latest sample was received
    summary: null,
    chart: null,
    chartEnd: 0,
    clockOffset: null,                 // meter clock - browser clock, seconds (null: unknown)
    zoom: null,                        // [min, max] of a zoomed or panned graph, or null: live
    dayView: localStorage.getItem("ihd.dayView") === "month" ? "month" : "days",
    month: null,                       // the month shown in the month view ("YYYY-MM")
    monthData: null,                   // its /api/month body
  };

  // The page follows the meter's clock (a sped-up meter runs ahead of the browser's): every
  // body from the display carries "time", the meter's now; between bodies it advances at the
  // browser's pace.
  function noteMeterTime(t) {
    if (typeof t === "number" && Number.isFinite(t)) state.clockOffset = t - Date.now() / 1000;
  }
  const meterNow = () => (state.clockOffset === null ? null : Date.now() / 1000 + state.clockOffset);

  function pickLang() {
    const saved = localStorage.getItem("ihd.lang");
    if (saved === "ko" || saved === "en") return saved;
    return (navigator.language || "").toLowerCase().startsWith("ko") ? "ko" : "en";
  }

  function tr(key, vars) {
    let s = (T[state.lang] && T[state.lang][key]) ?? T.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
    return s;
  }

  const locale = () => (state.lang === "ko" ? "ko-KR" : "en-US");
  const formats = new Map();
  function num(value, digits) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
    const key = `${locale()}/${digits}`;
    if (!formats.has(key)) {
      formats.set(key, new Intl.NumberFormat(locale(), {
        minimumFractionDigits: digits, maximumFractionDigits: digits }));
    }
    return formats.get(key).format(Number(value));
  }
  const won = (v) => (v === null || v === undefined ? "—" : tr("won", { v: num(v, 0) }));
  const percent = (fraction) => `${num(Number(fraction) * 100, fraction.length > 4 ? 1 : 0)}%`;

  // Text for people, data-value for tests and scripts: the exact figure behind the text.
  function show(id, text, raw) {
    const el = $(id);
    el.textContent = text;
    el.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function fmtWatts(v) {
    if (v === null || v === undefined) return "—";
    return Math.abs(v) >= 10000 ? `${num(v / 1000, 1)} kW` : `${num(v, 0)} W`;
  }

  function localDate(ts) {
    return uPlot.tzDate(new Date(ts * 1000), state.tz);
  }
  const pad = (n) => String(n).padStart(2, "0");

  // ---------------------------------------------------------------- language

  function applyLang() {
    document.documentElement.lang = state.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = tr(el.dataset.i18n);
    $("lang").textContent = tr("lang_button");
    $("lang").title = tr("lang_name");
    formats.clear();
    renderLive();
    renderSummary();
    renderStatus();
    rebuildChart();
  }

  // ---------------------------------------------------------------- live values

  function renderLive() {
    const d = state.live;
    const s = d && d.sample;
    show("voltage", s ? num(s.voltage, 1) : "—", s && s.voltage);
    show("current", s ? num(s.current, 2) : "—", s && s.current);
    show("active-power", s ? num(s.active_power, 0) : "—", s && s.active_power);
    show("apparent-power", s ? num(s.apparent_power, 0) : "—", s && s.apparent_power);
    show("power-factor", s ? num(s.power_factor, 2) : "—", s && s.power_factor);
    const cost = d && d.cost_per_hour !== null && d.cost_per_hour !== undefined
      ? Number(d.cost_per_hour) : null;
    show("cost-per-hour", cost === null ? "—" : num(cost, cost < 100 ? 1 : 0),
      d && d.cost_per_hour);
    const band = (d && d.band) || "";
    $("now-card").dataset.band = band;
    $("band").dataset.band = band;
    $("band").textContent = band ? tr(`band_${band}`) : "";
  }

  function isStale() {
    const d = state.live;
    if (!d || !d.sample || state.sampleSeenAt === null) return true;
    return d.stale || (Date.now() - state.sampleSeenAt) / 1000 > STALE_S;
  }

  function renderStatus() {
    const stale = isStale();
    const status = $("status");
    const waiting = state.live === null;
    status.className = `status ${waiting ? "waiting" : stale ? "offline" : "live"}`;
    $("status-text").textContent = tr(waiting ? "waiting" : stale ? "offline" : "live");
    $("stale").hidden = waiting || !stale;
    document.body.classList.toggle("is-stale", !waiting && stale);
    if (state.sampleSeenAt === null) {
      $("stale-text").textContent = tr("stale_never");
    } else {
      const age = Math.max(0, Math.round((Date.now() - state.sampleSeenAt) / 1000));
      const ageText = age < 120 ? tr("seconds", { n: num(age, 0) })
        : tr("minutes", { n: num(Math.floor(age / 60), 0) });
      $("stale-text").textContent = tr("stale", { age: ageText });
    }
  }

  function renderClock() {
    const now = meterNow();
    if (now === null) {
      show("clock", "—", null);
      return;
    }
    const fmt = new Intl.DateTimeFormat(locale(), {
      timeZone: state.tz, month: "short", day: "numeric", weekday: "short",
      hour: "2-digit", minute: "2-digit", hour12: false });
    show("clock", fmt.format(new Date(now * 1000)), Math.floor(now));
    $("clock").dateTime = new Date(now * 1000).toISOString();
  }

  // ---------------------------------------------------------------- graph

  function firstAfter(t, value) {       // index of the first t > value (t sorted)
    let lo = 0, hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid] > value) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  function visible() {
    const n = state.t.length;
    const end = n ? state.t[n - 1] : (meterNow() ?? Date.now() / 1000);
    const from = state.zoom ? Math.min(state.zoom[0], end - state.window) : end - state.window;
    const start = firstAfter(state.t, state.zoom ? from - STEP : from);
    const xs = [], ys = [];
    for (let k = start; k < n; k++) {
      // a hole in the data (display or meter off) is drawn as a gap, not a straight line
      if (k > start && state.t[k] - state.t[k - 1] > BRIDGE) {
        xs.push(state.t[k - 1] + STEP);
        ys.push(null);
      }
      xs.push(state.t[k]);
      ys.push(state.p[k]);
    }
    return { xs, ys, count: n - start, end: end + STEP };
  }

  function chartHeight() {
    return window.innerWidth < 640 ? 220 : 300;
  }

  function rebuildChart() {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    drawChart();
  }

  function makeChart(el) {
    const fill = (u) => {
      const top = u.bbox && u.bbox.top, height = u.bbox && u.bbox.height;
      if (!Number.isFinite(top) || !Number.isFinite(height)) return "rgba(37, 99, 235, 0.12)";
      const g = u.ctx.createLinearGradient(0, top, 0, top + height);
      g.addColorStop(0, "rgba(37, 99, 235, 0.30)");
      g.addColorStop(1, "rgba(37, 99, 235, 0.02)");
      return g;
    };
    const axis = { stroke: "#64748b", grid: { stroke: "#e9eef5", width: 1 },
                   ticks: { stroke: "#e2e8f0", width: 1 }, font: "12px system-ui, sans-serif" };
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: chartHeight(),
      tzDate: localDate,
      padding: [12, 8, 0, 0],
      // drag across the graph to zoom in on that span (the buttons pan and reset)
      cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 7 } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 4) {
            zoomTo(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
      legend: { show: true, live: true },
      scales: {
        x: { time: true, range: () => xRange() },
        y: { range: (u, min, max) => [Math.min(0, min ?? 0), niceMax(max)] },
      },
      series: [
        { label: tr("time"), value: (u, ts, s, idx) => {
          const t = idx == null ? lastOf(state.t) : ts;   // idle: the newest point
          return t == null ? "—" : timeLabel(t, true);
        } },
        { label: tr("active_power"), stroke: "#2563eb", width: 1.5, fill,
          points: { show: false }, spanGaps: false,
          value: (u, v, s, idx) => fmtWatts(idx == null ? lastOf(state.p) : v) },
      ],
      axes: [
        { ...axis, values: (u, splits) => splits.map((ts) => timeLabel(ts, false)) },
        { ...axis, size: 64, values: (u, splits) => splits.map(fmtWatts) },
      ],
    };
    return new uPlot(opts, [[], []], el);
  }

  const lastOf = (a) => (a.length ? a[a.length - 1] : null);

  function niceMax(max) {
    if (!max || max <= 0) return 500;
    const mag = 10 ** Math.floor(Math.log10(max));
    for (const f of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * mag >= max * 1.08) return f * mag;
    return 10 * mag;
  }

  function timeLabel(ts, seconds) {
    const d = localDate(ts);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return seconds ? `${d.getMonth() + 1}/${d.getDate()} ${hm}:${pad(d.getSeconds())}` : hm;
  }

  const liveRange = () => [state.chartEnd - state.window, state.chartEnd];
  const xRange = () => state.zoom || liveRange();

  // Zoom and pan: a span of at least a minute, inside the 24 h the page holds. While zoomed
  // or panned the view stays put as new points arrive; Reset goes back to the live window.
  function zoomTo(min, max) {
    const first = state.t.length ? state.t[0] : state.chartEnd - DAY;
    const width = Math.min(Math.max(max - min, 60), DAY);
    min = Math.max(min, first - STEP);
    max = Math.min(min + width, state.chartEnd);
    min = max - width;
    state.zoom = [min, max];
    drawChart();
  }

  function pan(direction) {
    const [min, max] = xRange();
    const shift = (max - min) / 2 * direction;
    if (direction > 0 && max + shift >= state.chartEnd) {
      state.zoom = null;                // back at the newest point: follow it live again
      drawChart();
    } else {
      zoomTo(min + shift, max + shift);
    }
  }

  function drawChart() {
    const el = $("chart");
    const v = visible();
    state.chartEnd = v.end;
    if (!state.chart) state.chart = makeChart(el);
    state.chart.setData([v.xs, v.ys]);
    el.dataset.points = String(v.count);
    el.dataset.zoom = state.zoom ? state.zoom.map(Math.round).join(",") : "";
    $("zoom-reset").disabled = !state.zoom;
    $("pan-right").disabled = !state.zoom;
    // line segments drawn (two non-null neighbours): points alone, each between gaps, draw none
    let segments = 0;
    for (let k = 1; k < v.ys.length; k++) if (v.ys[k] !== null && v.ys[k - 1] !== null) segments++;
    el.dataset.segments = String(segments);
    el.dataset.window = String(state.window);
  }

  function appendPoints(pts) {
    if (!pts || !pts.t.length) return false;
    const last = state.t.length ? state.t[state.t.length - 1] : -Infinity;
    let added = false;
    for (let k = 0; k < pts.t.length; k++) {
      if (pts.t[k] > last) {            // a reconnecting stream may repeat points
        state.t.push(pts.t[k]);
        state.p.push(pts.p[k]);
        added = true;
      }
    }
    const cut = firstAfter(state.t, state.t[state.t.length - 1] - DAY);
    if (cut > 0) {
      state.t.splice(0, cut);
      state.p.splice(0, cut);
    }
    return added;
  }

  function setWindow(seconds) {
    state.window = seconds;
    state.zoom = null;
    localStorage.setItem("ihd.window", String(seconds));
    for (const b of document.querySelectorAll("#windows button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.window) === seconds));
    }
    $("csv-link").href = `/api/history.csv?seconds=${seconds}`;
    drawChart();
  }

  // ---------------------------------------------------------------- summary

  function renderSummary() {
    const s = state.summary;
    if (!s) return;
    const [y, m] = s.month.split("-").map(Number);
    $("bill-month").textContent = new Intl.DateTimeFormat(locale(), {
      month: "long", timeZone: "UTC" }).format(new Date(Date.UTC(y, m - 1, 15)));
    show("month-kwh", num(s.month_kwh, 1), s.month_kwh);
    show("energy-24h", num(s.energy_24h_kwh, 2), s.energy_24h_kwh);
    show("energy-total", s.energy_total_kwh === null ? "—" : num(s.energy_total_kwh, 1),
      s.energy_total_kwh);

    const b = s.bill;
    const rows = { basic: "bill-basic", energy: "bill-energy", climate: "bill-climate",
                   fuel: "bill-fuel", subtotal: "bill-subtotal", vat: "bill-vat",
                   fund: "bill-fund", total: "bill-total-row" };
    for (const [key, id] of Object.entries(rows)) show(id, b ? won(b[key]) : "—", b && b[key]);
    show("bill-total", b ? won(b.total) : "—", b && b.total);
    $("vat-rate").textContent = b ? `(${percent(b.vat_rate)})` : "";
    $("fund-rate").textContent = b ? `(${percent(b.fund_rate)})` : "";
    $("tariff-error").hidden = !s.error;

    const p = s.projection;
    show("projection-total", p ? won(p.total) : "—", p && p.total);
    show("projection-kwh", p ? num(p.kwh, 0) : "—", p && p.kwh);
    const basis = s.projection_basis;
    let basisText = "";
    if (basis) {
      const hours = tr("hours_n", { n: num(basis.hours, basis.hours < 10 ? 1 : 0) });
      const since = new Intl.DateTimeFormat(locale(), {
        timeZone: state.tz, month: "numeric", day: "numeric", hour: "2-digit",
        minute: "2-digit", hour12: false }).format(new Date(basis.since));
      basisText = tr(basis.enough ? "projection_basis" : "projection_wait", { since, hours });
    }
    show("projection-basis", basisText, basis && basis.since);

    const blk = s.block;
    const box = $("block").closest(".block-box");
    if (blk) {
      const name = blk.block === 4 ? tr("block_super") : tr("block_n", { n: blk.block });
      show("block", `${name} · ${tr(`season_${blk.season}`)}`, blk.block);
      const left = blk.kwh_to_next_block;
      show("kwh-to-next-block",
        left === null ? tr("last_block") : tr("to_next_block", { kwh: num(left, 1) }), left);
      const rate = blk.marginal_rate_with_taxes;
      show("marginal-rate", rate === null ? "—" : tr("won", { v: num(rate, 1) }), rate);
      const used = Number(s.month_kwh);
      const fillPct = left === null ? 100 : (100 * used) / (used + Number(left) || 1);
      $("block-fill").style.width = `${Math.min(100, Math.max(2, fillPct))}%`;
      box.dataset.block = String(blk.block);
    } else {
      show("block", "—", null);
      show("kwh-to-next-block", "", null);
      show("marginal-rate", "—", null);
      box.dataset.block = "";
    }
    renderDaily(s.daily || []);
  }

  const dayFmt = () => new Intl.DateTimeFormat(locale(), {
    month: "numeric", day: "numeric", weekday: "short", timeZone: "UTC" });
  function dateOf(iso) {
    const [y, m, dd] = iso.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, dd));
  }

  function renderDaily(days) {
    if (state.dayView === "month") return renderMonth();
    const box = $("daily");
    box.dataset.view = "days";
    box.textContent = "";
    $("month-nav").hidden = true;
    $("month-sum").textContent = "";
    const max = Math.max(0.001, ...days.map((d) => d.kwh));
    const fmt = dayFmt();
    days.forEach((d, k) => {
      const row = document.createElement("div");
      row.className = "drow" + (k === days.length - 1 ? " today" : "");
      row.dataset.day = d.day;
      row.dataset.value = String(d.kwh);
      row.dataset.won = d.won === null || d.won === undefined ? "" : String(d.won);
      const label = document.createElement("span");
      label.className = "dd";
      label.textContent = fmt.format(dateOf(d.day));
      const bar = document.createElement("span");
      bar.className = "dbar";
      const fill = document.createElement("i");
      fill.style.width = `${Math.max(1, (100 * d.kwh) / max)}%`;
      bar.append(fill);
      const kwh = document.createElement("span");
      kwh.className = "dk";
      kwh.textContent = `${num(d.kwh, d.kwh < 10 ? 1 : 0)} kWh`;
      const cost = document.createElement("span");
      cost.className = "dw";
      cost.textContent = won(d.won);
      row.append(label, bar, kwh, cost);
      box.append(row);
    });
  }

  // The month view: one bar per day of the month (its date, kWh and cost on hover/tap), the
  // month's kWh and bill, and the months the display keeps (400 days) to page through.
  function renderMonth() {
    const box = $("daily");
    box.dataset.view = "month";
    box.textContent = "";
    $("month-nav").hidden = false;
    const m = state.monthData;
    if (!m) return;
    const [y, mo] = m.month.split("-").map(Number);
    $("month-label").textContent = new Intl.DateTimeFormat(locale(), {
      year: "numeric", month: "long", timeZone: "UTC" }).format(new Date(Date.UTC(y, mo - 1, 15)));
    $("month-label").dataset.value = m.month;
    const k = m.months.indexOf(m.month);
    $("month-prev").disabled = k <= 0 && !(k < 0 && m.months.length && m.months[0] < m.month);
    $("month-next").disabled = k < 0 || k >= m.months.length - 1;
    const byDay = new Map(m.days.map((d) => [d.day, d]));
    const length = new Date(Date.UTC(y, mo, 0)).getUTCDate();
    const max = Math.max(0.001, ...m.days.map((d) => d.kwh));
    const fmt = dayFmt();
    for (let dd = 1; dd <= length; dd++) {
      const iso = `${m.month}-${pad(dd)}`;
      const d = byDay.get(iso);
      const col = document.createElement("div");
      col.className = "day";
      col.dataset.day = iso;
      col.dataset.value = d ? String(d.kwh) : "";
      col.dataset.won = d && d.won !== null ? String(d.won) : "";
      col.title = d ? tr("day_title", { date: fmt.format(dateOf(iso)), kwh: num(d.kwh, 2),
                                        won: won(d.won) }) : fmt.format(dateOf(iso));
      const track = document.createElement("span");
      track.className = "track";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.height = d ? `${Math.max(2, (100 * d.kwh) / max)}%` : "0";
      track.append(bar);
      const label = document.createElement("span");
      label.className = "d";
      label.textContent = String(dd);
      col.append(track, label);
      box.append(col);
    }
    $("month-sum").textContent = m.days.length && m.bill
      ? tr("month_sum", { kwh: num(m.kwh, 1), won: won(m.bill.total) }) : tr("month_empty");
  }

  async function loadMonth(month) {
    try {
      const q = month ? `?month=${month}` : "";
      const r = await fetch(`/api/month${q}`, { cache: "no-store" });
      if (r.ok) {
        state.monthData = await r.json();
        state.month = state.monthData.month;
        if (state.dayView === "month") renderMonth();
      }
    } catch (e) {
      // the display may be restarting; the next round tries again
    }
  }

  function setDayView(view) {
    state.dayView = view;
    localStorage.setItem("ihd.dayView", view);
    for (const b of document.querySelectorAll("#day-views button")) {
      b.setAttribute("aria-pressed", String(b.dataset.view === view));
    }
    if (view === "month") loadMonth(state.month);
    renderDaily((state.summary && state.summary.daily) || []);
  }

  function stepMonth(direction) {
    const m = state.monthData;
    if (!m) return;
    const k = m.months.indexOf(m.month);
    let next = m.months[k + direction];
    if (k < 0 && direction < 0) next = m.months.filter((x) => x < m.month).pop();
    if (next) loadMonth(next);
  }

  async function loadSummary() {
    try {
      const r = await fetch("/api/summary", { cache: "no-store" });
      if (r.ok) {
        state.summary = await r.json();
        state.tz = state.summary.tz || state.tz;
        noteMeterTime(state.summary.time);
        renderSummary();
      }
    } catch (e) {
      // the display may be restarting; the next round tries again
    }
  }

  // ---------------------------------------------------------------- events

  function onSample(d) {
    state.live = d;
    noteMeterTime(d.time);
    if (d.sample) state.sampleSeenAt = Date.now() - (d.age || 0) * 1000;
    renderLive();
    renderStatus();
    if (appendPoints(d.points)) drawChart();
  }

  function connect() {
    const since = state.t.length ? `?since=${state.t[state.t.length - 1]}` : "";
    const es = new EventSource(`/events${since}`);
    es.addEventListener("sample", (e) => onSample(JSON.parse(e.data)));
    es.addEventListener("stale", (e) => {
      const d = JSON.parse(e.data);
      state.live = { ...(state.live || {}), ...d, sample: (state.live && state.live.sample) || d.sample };
      renderStatus();
    });
  }

  async function start() {
    for (const b of document.querySelectorAll("#windows button")) {
      b.addEventListener("click", () => setWindow(Number(b.dataset.window)));
    }
    $("pan-left").addEventListener("click", () => pan(-1));
    $("pan-right").addEventListener("click", () => pan(1));
    $("zoom-reset").addEventListener("click", () => { state.zoom = null; drawChart(); });
    for (const b of document.querySelectorAll("#day-views button")) {
      b.addEventListener("click", () => setDayView(b.dataset.view));
    }
    $("month-prev").addEventListener("click", () => stepMonth(-1));
    $("month-next").addEventListener("click", () => stepMonth(1));
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "ko" ? "en" : "ko";
      localStorage.setItem("ihd.lang", state.lang);
      applyLang();
    });
    applyLang();
    setWindow(state.window);
    setDayView(state.dayView);
    await loadSummary();
    try {
      const r = await fetch(`/api/history?seconds=${DAY}`, { cache: "no-store" });
      if (r.ok) appendPoints(await r.json());
    } catch (e) {
      // no history yet: the graph fills from the live stream
    }
    rebuildChart();
    connect();
    renderClock();
    setInterval(() => { renderStatus(); renderClock(); }, 500);
    setInterval(() => {
      loadSummary();
      if (state.dayView === "month") loadMonth(state.month);
    }, SUMMARY_EVERY_MS);
    // the canvas has a fixed size: follow the card when the window or the phone turns
    new ResizeObserver(() => {
      if (state.chart) state.chart.setSize({ width: Math.max($("chart").clientWidth, 200),
                                             height: chartHeight() });
    }).observe($("chart"));
  }

  start();
})();
