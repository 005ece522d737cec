// Sign-in for the head-end console (docs/headend.md, "Sign-in and roles"): the sign-in form
// when there is no session, the user and role with Sign out in the header, the CSRF token on
// every unsafe request, the confirmation dialog of dangerous commands, and the audit panel.
// Loaded before console.js, which starts its views once `c1222Auth.ready` resolves.
(() => {
  "use strict";

  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
  // Commands that change a meter or drop it: confirmed in a dialog naming the meter.
  const CONFIRM = new Set(["write", "procedure", "terminate", "disconnect", "deregister"]);
  const realFetch = window.fetch.bind(window);
  let csrf = null;
  let signInShown = false;
  let resolveReady;

  const auth = {
    me: null,
    may: null,
    ready: new Promise((resolve) => { resolveReady = resolve; }),
    allows,
    confirm: confirmDialog,
    confirmCommand,
  };
  window.c1222Auth = auth;

  // Every unsafe same-origin request carries the session's CSRF token; a 401 means the
  // session ended: back to the sign-in form.
  window.fetch = async (input, init = {}) => {
    const method = (init.method || (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (UNSAFE.has(method) && csrf) {
      const headers = new Headers(init.headers || {});
      headers.set("X-CSRF-Token", csrf);
      init = { ...init, headers };
    }
    const res = await realFetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (res.status === 401 && !String(url).includes("/api/login")) showSignIn();
    return res;
  };

  const { el } = window.c1222Dom;

  // ------------------------------------------------------------------ roles

  // A service button is shown only when the role may use it (GET /api/me's `may`, computed
  // from the server's one policy table).
  function allows(s) {
    if (!auth.may) return false;
    if (s.fixed && s.fixed.mfg && s.fixed.number === 0) return auth.may.remote_switch;
    return auth.may.services[s.name] === true;
  }

  // ------------------------------------------------------------------ confirmation

  function confirmDialog(title, text, action) {
    return new Promise((resolve) => {
      const dialog = el("dialog", { class: "confirm", "data-testid": "confirm-dialog" });
      const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
      dialog.append(
        el("h2", { text: title }),
        el("p", { "data-testid": "confirm-text", text }),
        el("div", { class: "confirm-buttons" },
          el("button", { type: "button", class: "ghost", "data-testid": "confirm-cancel",
                         text: "Cancel", onclick: () => done(false) }),
          el("button", { type: "button", class: "svc danger", "data-testid": "confirm-ok",
                         text: action, onclick: () => done(true) })));
      dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
      document.body.append(dialog);
      dialog.showModal();
      dialog.querySelector("[data-testid=confirm-cancel]").focus();  // Enter does not confirm
    });
  }

  function confirmCommand(s, apTitle, params) {
    if (!CONFIRM.has(s.name) && !s.danger) return Promise.resolve(true);
    let what = s.label;
    if (s.name === "write") what = `Write table ${params.table}${params.offset !== undefined ? ` at offset ${params.offset}` : ""}`;
    else if (s.name === "procedure" && !s.fixed) what = `Run ${params.mfg ? "manufacturer " : ""}procedure ${params.number}`;
    else if (s.name === "deregister" && params.ap_title) what = `Deregister ${params.ap_title}`;
    return confirmDialog(`${what}?`, `${what} on meter ${apTitle}. This acts on the meter ` +
                         "(and is recorded in the audit log).", s.label);
  }

  // ------------------------------------------------------------------ sign-in

  function showSignIn(message) {
    if (signInShown) return;
    signInShown = true;
    const error = el("p", { class: "bad small", "data-testid": "signin-error", text: message || "" });
    const user = el("input", { name: "username", autocomplete: "username", required: true,
                               "data-testid": "signin-user", "aria-label": "User name" });
    const password = el("input", { name: "password", type: "password", required: true,
                                   autocomplete: "current-password",
                                   "data-testid": "signin-password", "aria-label": "Password" });
    const button = el("button", { type: "submit", class: "svc", "data-testid": "signin-submit",
                                  text: "Sign in" });
    const form = el("form", { class: "card signin", "data-testid": "signin" },
      el("h1", { text: "Sign in" }),
      el("p", { class: "muted small", text: "c1222 head-end console. Accounts: c1222 headend user add." }),
      el("label", { class: "field" }, el("span", { text: "user" }), user),
      el("label", { class: "field" }, el("span", { text: "password" }), password),
      button, error);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      button.disabled = true;
      error.textContent = "";
      try {
        const res = await realFetch("/api/login", {
          method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ username: user.value, password: password.value }) });
        if (res.ok) { location.reload(); return; }
        error.textContent = res.status === 429
          ? `Too many failed attempts; try again in ${res.headers.get("Retry-After") || "a few"} s.`
          : (res.status === 401 ? "Wrong user name or password." : `Sign-in failed (HTTP ${res.status}).`);
      } catch (err) {
        error.textContent = `Sign-in failed: ${err}`;
      } finally {
        button.disabled = false;
      }
    });
    const screen = el("div", { class: "signin-screen" }, form);
    document.body.append(screen);
    document.getElementById("view").hidden = true;
    user.focus();
  }

  // ------------------------------------------------------------------ user bar and audit

  function userBar(me) {
    const bar = el("span", { class: "userbar", "data-testid": "userbar" },
      el("span", { class: "user", "data-testid": "user-name", text: me.user }),
      el("span", { class: "badge", "data-testid": "user-role", text: me.role }));
    if (me.may.audit) {
      bar.append(el("button", { type: "button", class: "ghost", "data-testid": "audit-open",
                                text: "Audit log", onclick: () => auditPanel() }));
    }
    bar.append(el("button", { type: "button", class: "ghost", "data-testid": "sign-out",
                              text: "Sign out", onclick: signOut }));
    document.querySelector("header.top").append(bar);
  }

  async function signOut() {
    await fetch("/api/logout", { method: "POST" });
    location.hash = "#/";
    location.reload();
  }

  const pad = (n) => String(n).padStart(2, "0");
  function stamp(iso) {
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
           `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function auditPanel() {
    const old = document.querySelector("[data-testid=audit-panel]");
    if (old) { old.remove(); return; }
    const user = el("input", { placeholder: "any user", "data-testid": "audit-user", "aria-label": "user" });
    const meter = el("input", { placeholder: "any meter", class: "wide", "data-testid": "audit-meter",
                                "aria-label": "meter AP title" });
    const rows = el("tbody", { "data-testid": "audit-rows" });
    const status = el("span", { class: "muted small" });
    async function load() {
      const q = new URLSearchParams({ limit: "200" });
      if (user.value.trim()) q.set("user", user.value.trim());
      if (meter.value.trim()) q.set("ap_title", meter.value.trim());
      const res = await fetch(`/api/audit?${q}`, { headers: { Accept: "application/json" } });
      if (!res.ok) { status.textContent = `HTTP ${res.status}`; return; }
      const entries = await res.json();
      status.textContent = `${entries.length} entries, newest first`;
      rows.replaceChildren(...entries.map((a) => el("tr", {
        class: a.status >= 400 ? "refused" : "", "data-testid": "audit-row", "data-action": a.action,
        "data-ap-title": a.ap_title || "", "data-status": String(a.status) },
        el("td", { text: stamp(a.time) }),
        el("td", { text: a.user || "—" }),
        el("td", { class: "action", text: a.action }),
        el("td", { class: "title", text: a.ap_title || "" }),
        el("td", { class: "params", text: a.params ? JSON.stringify(a.params) : "" }),
        el("td", { class: "num", text: String(a.status) }),
        el("td", { class: "result", text: a.result }))));
    }
    const panel = el("section", { class: "card audit-panel", "data-testid": "audit-panel" },
      el("div", { class: "card-head" }, el("h1", { text: "Audit log" }), status,
        el("button", { type: "button", class: "ghost", "data-testid": "audit-close", text: "Close",
                       onclick: () => panel.remove() })),
      el("form", { class: "svc-row", onsubmit: (e) => { e.preventDefault(); load(); } },
        el("div", { class: "fields" },
          el("label", { class: "field" }, el("span", { text: "user" }), user),
          el("label", { class: "field wide" }, el("span", { text: "meter" }), meter)),
        el("button", { type: "submit", class: "svc", "data-testid": "audit-refresh", text: "Show" })),
      el("div", { class: "table-wrap" }, el("table", { class: "audit" },
        el("thead", {}, el("tr", {}, ...["Time", "User", "Action", "Meter", "Parameters", "HTTP", "Result"]
          .map((h) => el("th", { text: h })))), rows)));
    document.getElementById("view").before(panel);
    load();
  }

  // ------------------------------------------------------------------ start

  async function start() {
    let res;
    try {
      res = await realFetch("/api/me", { headers: { Accept: "application/json" } });
    } catch (err) {
      showSignIn(`The head-end does not answer: ${err}`);
      return;
    }
    if (!res.ok) { showSignIn(res.status === 401 ? "" : `HTTP ${res.status}`); return; }
    const me = await res.json();
    auth.me = me;
    auth.may = me.may;
    csrf = me.csrf_token;
    document.body.dataset.role = me.role;
    userBar(me);
    resolveReady(me);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
