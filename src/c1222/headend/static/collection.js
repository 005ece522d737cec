// The console's "Collection" panel on the Meters page (docs/headend.md, "Collecting"): the
// collector's accounting from GET /api/collection — the interval under way and the last ones,
// each with meters due, read, failed (by reason), late, skipped, retries and gone. Self-
// contained, like notices.js: it adds its card after the meters table whenever console.js
// draws the Meters page, and polls while the card is shown.
(() => {
  "use strict";

  const PANEL_ID = "collection-card";
  const ROWS = 10;
  const POLL_MS = 5000;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function clock(unix) {
    return new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
  }

  function reasons(r) {
    const list = Object.entries(r || {});
    return list.length ? list.map(([k, v]) => `${k} ${v}`).join(", ") : "—";
  }

  function row(i, current) {
    // success: read within the interval / due (a late read is read, but not in time)
    const ok = i.due ? `${(100 * (i.read - i.late) / i.due).toFixed(1)} %` : "—";
    const cells = [
      el("td", { text: `${i.number}${current ? " (now)" : ""}` }),
      el("td", { class: "muted", text: `${clock(i.start)}–${clock(i.end)}` }),
      ...["due", "read", "failed", "late", "skipped", "retries", "gone", "pending"].map(
        (k) => el("td", { class: `num${k === "failed" && i[k] ? " bad" : ""}`,
          "data-col": k, text: String(i[k]) })),
      el("td", { class: "num", "data-col": "success", text: current ? "…" : ok }),
      el("td", { class: "muted small", "data-col": "reasons", text: reasons(i.reasons) }),
    ];
    return el("tr", { "data-testid": "collection-row", "data-number": String(i.number) },
      ...cells);
  }

  function panel() {
    const summary = el("span", { class: "muted small", "data-testid": "collection-summary" });
    const body = el("tbody", { "data-testid": "collection-rows" });
    const empty = el("p", { class: "empty", "data-testid": "collection-empty",
      text: "No interval yet." });
    const head = el("tr", {}, ...["Interval", "Time", "Due", "Read", "Failed", "Late",
      "Skipped", "Retries", "Gone", "Pending", "In time", "Failures by reason"].map(
      (h, k) => el("th", { class: k >= 2 && k <= 10 ? "num" : null, text: h })));
    const card = el("section", { class: "card", id: PANEL_ID, "data-testid": "collection" },
      el("div", { class: "card-head" }, el("h2", { text: "Collection" }), summary),
      el("div", { class: "table-wrap" },
        el("table", { class: "nodes collection", "data-testid": "collection-table" },
          el("thead", {}, head), body)),
      empty);

    async function refresh() {
      if (!document.body.contains(card)) { clearInterval(timer); return; }
      try {
        const r = await fetch(`/api/collection?history=${ROWS - 1}`,
          { headers: { Accept: "application/json" } });
        if (!r.ok) return;
        const c = await r.json();
        summary.textContent = `every ${c.interval} s, spread over ${Math.round(c.spread * 100)} %` +
          ` of it · ${c.concurrency} reads at once · ${c.attempts} attempts · ` +
          `${c.running} running, ${c.owed} owed`;
        const rows = c.current ? [row(c.current, true)] : [];
        for (const i of c.history) rows.push(row(i, false));
        body.replaceChildren(...rows);
        empty.hidden = rows.length > 0;
      } catch (e) {
        summary.textContent = "the collection could not be read";
      }
    }

    let timer = null;
    // polls once the card is on the page, until it leaves it
    card.start = () => { timer = setInterval(refresh, POLL_MS); refresh(); };
    return card;
  }

  function attach() {
    const hash = location.hash || "#/";
    if (hash !== "#/" && hash !== "#") return;
    const meters = document.querySelector("#view [data-testid=node-table]");
    if (!meters || document.getElementById(PANEL_ID)) return;
    const card = panel();
    meters.closest("section.card").after(card);
    card.start();
  }

  const view = document.getElementById("view");
  if (view) new MutationObserver(attach).observe(view, { childList: true });
  attach();
})();
