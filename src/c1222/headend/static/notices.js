// The console's "Notice to the household" panel on a meter's page (docs/headend.md): sends a
// notice (PUT /api/nodes/{ap_title}/notice) that the meter keeps in MT2 and passes to its
// in-home display, clears it (DELETE) and shows what the meter holds (GET). Self-contained:
// it adds its card after the node header whenever console.js draws a meter's page.
(() => {
  "use strict";

  const PANEL_ID = "notice-card";

  const { el } = window.c1222Dom;

  function field(label, input, extra) {
    return el("label", { class: `field${extra ? ` ${extra}` : ""}` }, el("span", { text: label }),
      input);
  }

  function describe(n) {
    if (!n) return "none";
    const what = n.kind === "peak" ? `peak, below ${n.limit_w / 1000} kW`
      : n.kind === "block" ? `block ${n.block} reached` : "text";
    const text = [n.text_ko, n.text_en].filter(Boolean).join(" / ");
    return `#${n.id} ${what}${text ? `: ${text}` : ""} (${n.start || "?"} → ${n.end || "?"})`;
  }

  function panel(apTitle) {
    const url = `/api/nodes/${encodeURIComponent(apTitle)}/notice`;
    const kind = el("select", { name: "kind", "data-testid": "notice-kind" },
      el("option", { value: "text", text: "Free text" }),
      el("option", { value: "peak", text: "Peak period (requested limit)" }),
      el("option", { value: "block", text: "Tariff block reached" }));
    const ko = el("input", { name: "text_ko", class: "wide",
      placeholder: "Korean text (≤ 240 bytes)", "data-testid": "notice-text-ko",
      autocomplete: "off" });
    const en = el("input", { name: "text_en", class: "wide", placeholder: "English (≤ 240 bytes)",
      "data-testid": "notice-text-en", autocomplete: "off" });
    const limit = el("input", { name: "limit_kw", type: "number", step: "any", min: "0",
      class: "narrow", placeholder: "kW", "data-testid": "notice-limit" });
    const block = el("input", { name: "block", type: "number", min: "1", max: "4",
      class: "narrow", placeholder: "2", "data-testid": "notice-block" });
    const minutes = el("input", { name: "minutes", type: "number", min: "1", value: "60",
      class: "narrow", "data-testid": "notice-minutes" });
    const limitField = field("limit kW", limit);
    const blockField = field("block", block);
    const send = el("button", { type: "submit", class: "svc", "data-testid": "notice-send",
      text: "Send notice" });
    const clear = el("button", { type: "button", class: "svc danger", "data-testid":
      "notice-clear", text: "Clear notice" });
    const status = el("p", { class: "result-status", "data-testid": "notice-status",
      text: "The meter passes a notice to its in-home display within seconds." });
    const held = el("p", { class: "muted small", "data-testid": "notice-held" });

    function showKind() {
      limitField.hidden = kind.value !== "peak";
      blockField.hidden = kind.value !== "block";
    }
    kind.addEventListener("change", showKind);
    showKind();

    async function refresh() {
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" } });
        const body = await r.json();
        held.textContent = r.ok ? `The meter holds: ${describe(body.notice)}` +
          (body.notice ? (body.active ? " — in force" : " — not in force now") : "")
          : `Could not read the meter's notice: ${detail(body)}`;
      } catch (e) {
        held.textContent = "Could not read the meter's notice.";
      }
    }

    function detail(body) {
      const d = body && body.detail;
      if (Array.isArray(d)) {
        return d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("; ");
      }
      return d || "error";
    }

    async function submit(method, body) {
      send.disabled = clear.disabled = true;
      status.className = "result-status pending";
      status.textContent = method === "PUT" ? "Sending…" : "Clearing…";
      try {
        const r = await fetch(url, { method, headers: { "Content-Type": "application/json",
          Accept: "application/json" }, body: body ? JSON.stringify(body) : undefined });
        const out = await r.json();
        const ok = r.ok && out.accepted;
        status.className = `result-status ${ok ? "ok" : "bad"}`;
        status.dataset.state = ok ? "ok" : "error";
        status.textContent = ok
          ? (method === "PUT" ? `Sent: ${describe(out.notice)}` : "Cleared.")
          : r.ok ? `The meter refused it: ${out.response_codes.join(", ")}`
            : `Not sent (${r.status}): ${detail(out)}`;
      } catch (e) {
        status.className = "result-status bad";
        status.textContent = `Not sent: ${e}`;
      } finally {
        send.disabled = clear.disabled = false;
        refresh();
      }
    }

    const form = el("form", { class: "notice-form", novalidate: true },
      el("div", { class: "fields" }, field("kind", kind), limitField, blockField,
        field("minutes", minutes)),
      el("div", { class: "fields" }, field("Korean", ko, "wide")),
      el("div", { class: "fields" }, field("English", en, "wide")),
      el("div", { class: "notice-buttons" }, send, clear));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = { kind: kind.value };
      if (ko.value.trim()) body.text_ko = ko.value.trim();
      if (en.value.trim()) body.text_en = en.value.trim();
      if (kind.value === "peak" && limit.value !== "") body.limit_kw = Number(limit.value);
      if (kind.value === "block" && block.value !== "") body.block = Number(block.value);
      if (minutes.value !== "") body.minutes = Number(minutes.value);
      submit("PUT", body);
    });
    clear.addEventListener("click", () => submit("DELETE"));
    // A role that may not send notices (auth.js) sees what the meter holds, not the form.
    const auth = window.c1222Auth;
    if (auth && auth.may && !auth.may.notices) {
      form.hidden = true;
      status.textContent = "Sending notices needs the engineer role.";
    }
    refresh();

    return el("section", { class: "card notice-card", id: PANEL_ID, "data-testid": "notice-card" },
      el("div", { class: "card-head" }, el("h2", { text: "Notice to the household" }),
        el("span", { class: "muted small", text: "MT2, shown on the in-home display" })),
      form, status, held);
  }

  function attach() {
    const m = (location.hash || "").match(/^#\/node\/(.+)$/);
    if (!m) return;
    const head = document.querySelector("#view .node-head");
    if (!head || document.getElementById(PANEL_ID)) return;
    head.after(panel(decodeURIComponent(m[1])));
  }

  const view = document.getElementById("view");
  if (view) new MutationObserver(attach).observe(view, { childList: true });
  attach();
})();
