// Notices and warnings of the in-home display (docs/ihd.md, "Notices and warnings"):
// the utility's notice (MT2, passed on by the meter), the display's block-edge warning and
// the household's power limit. Self-contained: it polls /api/notices every 2 s, follows the
// page's language (the lang attribute app.js sets) and labels from i18n.js.
(() => {
  "use strict";
  const T = window.IHD_I18N;
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let last = null;

  const lang = () => (document.documentElement.lang === "ko" ? "ko" : "en");
  function tr(key, vars) {
    let s = (T[lang()] && T[lang()][key]) ?? T.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, v);
    return s;
  }
  const locale = () => (lang() === "ko" ? "ko-KR" : "en-US");
  const num = (v, digits) => Number(v).toLocaleString(locale(),
    { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const watts = (w) => (Math.abs(w) >= 1000 ? `${num(w / 1000, 2)} kW` : `${num(w, 0)} W`);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }

  function timeText(ts, tz) {
    const fmt = new Intl.DateTimeFormat(locale(), {
      timeZone: tz || "Asia/Seoul", month: "short", day: "numeric", hour: "2-digit",
      minute: "2-digit", hour12: false });
    return fmt.format(new Date(ts * 1000));
  }

  // The block warning can be dismissed, for that block of that month (it comes back at the
  // next block or the next month).
  const seenKey = (w) => `${w.month}:${w.block}`;
  const dismissed = () => localStorage.getItem("ihd.blockWarningSeen");

  function noticeBanner(n, tz) {
    const title = n.kind === "block"
      ? (n.block >= 4 ? tr("notice_block_super") : tr("notice_block", { n: n.block }))
      : n.kind === "peak" ? tr("notice_peak", { kw: num(n.limit_w / 1000, 1) })
        : tr("notice_text");
    // the text in the page's language; the other one when only that was written
    const text = lang() === "ko" ? (n.text_ko || n.text_en) : (n.text_en || n.text_ko);
    const until = n.end !== null ? tr("notice_until", { time: timeText(n.end, tz) }) : "";
    return el("div", { class: `banner utility kind-${n.kind}`, role: "alert",
      "data-testid": "notice-banner", "data-kind": n.kind, "data-id": String(n.id) },
    el("span", { class: "from" }, tr("notice_from")),
    el("b", { "data-testid": "notice-title" }, title),
    el("span", { class: "text", "data-testid": "notice-text" }, text),
    el("span", { class: "until muted", "data-testid": "notice-until" }, until));
  }

  function warningBanner(w) {
    if (w.kind === "power_limit") {
      return el("div", { class: "banner warn-limit", role: "alert",
        "data-testid": "warning-limit", "data-value": String(w.power_w) },
      el("span", {}, tr("warn_limit", { power: watts(w.power_w), limit: watts(w.limit_w) })));
    }
    if (dismissed() === seenKey(w)) return null;
    const text = tr(w.block >= 4 ? "warn_block_super" : "warn_block",
      { kwh: num(w.month_kwh, 1), edge: num(w.edge_kwh, 0), n: w.block });
    const close = el("button", { type: "button", class: "dismiss", "data-testid":
      "warning-block-dismiss", title: tr("dismiss"), ariaLabel: tr("dismiss") }, "×");
    close.addEventListener("click", () => {
      localStorage.setItem("ihd.blockWarningSeen", seenKey(w));
      render();
    });
    return el("div", { class: "banner warn-block", role: "status",
      "data-testid": "warning-block", "data-block": String(w.block) },
    el("span", {}, text), close);
  }

  function render() {
    const box = $("notices");
    if (!box) return;
    box.replaceChildren();
    const d = last;
    if (d) {
      if (d.notice) box.append(noticeBanner(d.notice, d.tz));
      for (const w of d.warnings || []) {
        const b = warningBanner(w);
        if (b) box.append(b);
      }
    }
    renderLimit();
  }

  // ---------------------------------------------------------------- the household's limit

  function limitForm() {
    if ($("limit-form")) return;
    const card = $("now-card");
    if (!card) return;
    const input = el("input", { id: "limit-input", type: "number", min: "1", max: "100000",
      step: "1", inputMode: "numeric", "data-testid": "limit-input" });
    const form = el("form", { id: "limit-form", class: "limit-form", "data-testid": "limit-form",
      noValidate: true },
      el("label", { htmlFor: "limit-input", id: "limit-label" }),
      el("b", { id: "limit-value", "data-testid": "limit-value" }),
      input, el("span", { class: "unit" }, "W"),
      el("button", { type: "submit", id: "limit-set", "data-testid": "limit-set" }),
      el("button", { type: "button", id: "limit-clear", "data-testid": "limit-clear" }),
      el("span", { id: "limit-error", class: "limit-error", "data-testid": "limit-error",
        hidden: true }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const value = Number(input.value);
      if (!Number.isInteger(value) || value < 1 || value > 100000) {
        $("limit-error").textContent = tr("limit_invalid");
        $("limit-error").hidden = false;
        return;
      }
      await send("PUT", { watts: value });
    });
    card.append(form);
    $("limit-clear").addEventListener("click", () => send("DELETE"));
  }

  async function send(method, body) {
    const r = await fetch("/api/power-limit", { method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined });
    $("limit-error").hidden = r.ok;
    if (r.ok) {
      last = await r.json();
      $("limit-input").value = "";
      render();
    } else {
      $("limit-error").textContent = tr("limit_invalid");
    }
  }

  function renderLimit() {
    if (!last) return;  // a display without the notices API (an older server): no form
    limitForm();
    if (!$("limit-form")) return;
    $("limit-label").textContent = tr("limit_label");
    $("limit-set").textContent = tr("limit_set");
    $("limit-clear").textContent = tr("limit_clear");
    const limit = last ? last.power_limit_w : null;
    $("limit-value").textContent = limit ? watts(limit) : tr("limit_none");
    $("limit-value").dataset.value = limit ? String(limit) : "";
    $("limit-clear").hidden = !limit;
  }

  async function poll() {
    try {
      const r = await fetch("/api/notices", { cache: "no-store" });
      if (r.ok) {
        last = await r.json();
        render();
      }
    } catch (e) {
      // the display's server is away: keep what is shown; the stale notice says so
    }
  }

  new MutationObserver(render).observe(document.documentElement,
    { attributes: true, attributeFilter: ["lang"] });
  render();
  poll();
  setInterval(poll, POLL_MS);
})();
