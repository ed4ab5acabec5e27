// The campaign page's script: polls /ui/..., draws the tables and SVG charts, and sends
// pause / resume / cancel after a confirmation. No library, no inline code (see the CSP).
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const STATE_ORDER = ["queued", "dialing", "retrying", "in_doubt", "originated", "failed", "cancelled", "expired", "skipped"];
const COLOURS = {
  queued: "#9aa5b1", dialing: "#2f80ed", retrying: "#f2c94c", in_doubt: "#bb6bd9",
  originated: "#27ae60", failed: "#eb5757", cancelled: "#4f4f4f", expired: "#828282", skipped: "#a0a0a0",
  completed: "#27ae60", busy: "#f2994a", "no-answer": "#f2c94c",
};
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function $(id) { return document.getElementById(id); }
function text(id, value) { const el = $(id); if (el) el.textContent = String(value); }
function el(tag, attrs, content) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (content !== undefined) node.textContent = String(content);
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}
function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
}
function when(epoch) {
  const d = new Date(epoch * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? clock(epoch) : d.toLocaleString([], { hour12: false });
}
function colour(name, i) {
  return COLOURS[name] || ["#56ccf2", "#9b51e0", "#6fcf97", "#f2994a", "#bdbdbd"][i % 5];
}

async function call(method, url) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  const resp = await fetch(url, opts);
  if (resp.status === 401) { location.assign("/login?next=" + encodeURIComponent(location.pathname)); throw new Error("log in"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

function showError(message) {
  const box = $("error");
  if (!box) return;
  box.hidden = !message;
  box.textContent = message || "";
}

// --- stacked bar ----------------------------------------------------------------------

function drawBar(id, entries) {
  const bar = $(id);
  bar.replaceChildren();
  const total = entries.reduce((a, [, n]) => a + n, 0);
  if (!total) { bar.appendChild(svg("rect", { x: 0, y: 0, width: 1000, height: 24, fill: "#eceff1" })); return; }
  let x = 0;
  entries.forEach(([name, n], i) => {
    if (!n) return;
    const w = (1000 * n) / total;
    const r = svg("rect", { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 24, fill: colour(name, i) });
    const t = svg("title"); t.textContent = name + ": " + n; r.appendChild(t);
    bar.appendChild(r);
    x += w;
  });
}

function countRows(tbodyParent, entries, total, attr) {
  const body = $(tbodyParent).querySelector("tbody");
  body.replaceChildren();
  entries.forEach(([name, n], i) => {
    const tr = el("tr");
    const sw = el("td", { class: "swatch-cell" });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour(name, i);
    sw.appendChild(swatch);
    tr.append(sw, el("th", {}, name), el("td", { [attr]: name, class: "num" }, n),
      el("td", { class: "num pct" }, total ? ((100 * n) / total).toFixed(1) + " %" : ""));
    body.appendChild(tr);
  });
}

// --- the rate chart -------------------------------------------------------------------

function drawRate(rate) {
  const chart = $("rate-chart");
  chart.replaceChildren();
  const W = 800, H = 220, L = 48, R = 12, T = 12, B = 28;
  const pts = rate.points;
  const peak = Math.max(rate.limit * 1.1, ...pts.map((p) => p[1]), 1);
  const unit = Math.pow(10, Math.floor(Math.log10(peak / 4)));
  const tick = [1, 2, 5, 10].map((m) => m * unit).find((s) => s * 4 >= peak);
  const top = tick * Math.ceil(peak / tick);
  const t0 = pts.length ? pts[0][0] : rate.scanned_at - rate.period_seconds;
  const t1 = pts.length ? pts[pts.length - 1][0] : rate.scanned_at;
  const span = Math.max(t1 - t0, 1e-3);
  const X = (t) => L + ((W - L - R) * (t - t0)) / span;
  const Y = (v) => T + (H - T - B) * (1 - v / top);
  // axes and grid
  for (let v = 0; v <= top + 1e-9; v += tick) {
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }));
    const lab = svg("text", { x: L - 6, y: Y(v) + 4, class: "axis", "text-anchor": "end" });
    lab.textContent = String(Number(v.toFixed(2)));
    chart.appendChild(lab);
  }
  for (const frac of [0, 0.5, 1]) {
    const t = t0 + span * frac;
    const lab = svg("text", { x: X(t), y: H - 8, class: "axis", "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle" });
    lab.textContent = clock(t);
    chart.appendChild(lab);
  }
  // the limit
  chart.appendChild(svg("line", { id: "rate-limit-line", x1: L, x2: W - R, y1: Y(rate.limit), y2: Y(rate.limit), class: "limit" }));
  const ll = svg("text", { x: W - R, y: Y(rate.limit) - 5, class: "axis limit-label", "text-anchor": "end" });
  ll.textContent = "limit " + rate.limit + " per " + rate.period_seconds + " s";
  chart.appendChild(ll);
  if (!pts.length) {
    const none = svg("text", { x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle" });
    none.textContent = "no request sent yet";
    chart.appendChild(none);
    return;
  }
  const d = pts.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1)).join(" ");
  const area = d + " L" + X(t1).toFixed(1) + " " + Y(0) + " L" + X(t0).toFixed(1) + " " + Y(0) + " Z";
  chart.appendChild(svg("path", { d: area, class: "rate-area" }));
  chart.appendChild(svg("path", { id: "rate-line", d, class: "rate-line" }));
}

// --- the campaign ---------------------------------------------------------------------

let current = null;

function renderCampaign(data) {
  current = data;
  const states = STATE_ORDER.map((s) => [s, data.states[s] || 0]);
  text("total", data.total);
  drawBar("state-bar", states);
  countRows("states", states, data.total, "data-state");
  text("parked", data.parked);
  text("redials", data.redials);

  const cs = Object.entries(data.call_status).sort((a, b) => b[1] - a[1]);
  const csTotal = cs.reduce((a, [, n]) => a + n, 0);
  drawBar("status-bar", cs);
  countRows("call-status", cs, csTotal, "data-status");
  $("call-status-none").hidden = cs.length > 0;

  const rate = data.rate;
  text("rate-last", rate.in_last_period);
  text("rate-limit", rate.limit);
  text("rate-period", rate.period_seconds);
  text("rate-period2", rate.period_seconds);
  text("rate-account", rate.account);
  text("rate-caption", "this campaign's Calls/connect requests in the trailing " + rate.period_seconds +
    " s, every " + rate.step_seconds + " s, against the account's limit");
  text("rate-note", "From the ledger's sent marks and attempt logs (" + rate.requests +
    " requests), read every " + rate.refresh_seconds + " s.");
  drawRate(rate);

  const d = data.in_doubt;
  text("doubt-entered", d.entered);
  text("doubt-settled", d.settled);
  text("doubt-still", d.still);
  const by = $("doubt-by").querySelector("tbody");
  by.replaceChildren();
  for (const [how, n] of Object.entries(d.by).sort((a, b) => b[1] - a[1])) {
    const tr = el("tr");
    tr.append(el("th", {}, how), el("td", { class: "num", "data-how": how }, n));
    by.appendChild(tr);
  }
  const calls = $("doubt-calls").querySelector("tbody");
  calls.replaceChildren();
  for (const c of d.calls) {
    const tr = el("tr");
    tr.append(el("td", {}, c.request_id), el("td", {}, when(c.since)), el("td", {}, c.how), el("td", {}, c.sid || "–"));
    calls.appendChild(tr);
  }
  $("doubt-calls").hidden = d.calls.length === 0;

  const held = data.held;
  $("held").hidden = !held;
  text("held-reason", held ? held.reason : "");
  text("held-message", held ? held.message : "");
  $("held-none").hidden = !!held;
  const hl = $("held-log").querySelector("tbody");
  hl.replaceChildren();
  for (const h of data.held_log) {
    const tr = el("tr", { "data-reason": h.reason });
    const seen = when(h.first_seen) + " – " + (h.ended ? when(h.ended) : "now");
    tr.append(el("th", {}, h.reason + (h.detail ? " (" + h.detail + ")" : "")), el("td", { class: "num" }, h.count),
      el("td", {}, h.until ? when(h.until) : "until resumed"), el("td", {}, seen));
    hl.appendChild(tr);
  }
  $("held-log").hidden = data.held_log.length === 0;
  const ct = $("controls-table").querySelector("tbody");
  ct.replaceChildren();
  for (const [k, v] of Object.entries(data.controls)) {
    const tr = el("tr");
    tr.append(el("th", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : v));
    ct.appendChild(tr);
  }

  const c = data.controls;
  const unsettled = ["queued", "dialing", "retrying", "in_doubt"].some((s) => (data.states[s] || 0) > 0);
  const badge = c.cancelled ? "cancelled" : c.paused ? "paused" : unsettled ? "running" : "done";
  const b = $("badge");
  b.textContent = badge;
  b.className = "badge " + badge;
  $("pause").disabled = c.cancelled || c.paused || !unsettled;
  $("resume").disabled = c.cancelled || !c.paused;
  $("cancel").disabled = c.cancelled || !unsettled;
  text("updated", "Updated " + clock(data.server_time) + " (every " + POLL_MS / 1000 + " s).");
  document.body.dataset.loaded = "1";
}

async function pollCampaign(campaign) {
  try {
    renderCampaign(await call("GET", "/ui/campaigns/" + encodeURIComponent(campaign) + "/live"));
    showError("");
  } catch (err) {
    showError(String(err.message || err));
  }
  setTimeout(() => pollCampaign(campaign), POLL_MS);
}

const QUESTIONS = {
  pause: (c) => "Pause campaign " + c + "? Waiting calls stay parked until you resume; calls already dialled finish.",
  resume: (c) => "Resume campaign " + c + "? Its parked calls are dialled again, within the account's limit.",
  cancel: (c) => "Cancel campaign " + c + "? Every call not yet dialled ends cancelled. This cannot be undone.",
};

function confirmThen(action, campaign) {
  const dialog = $("confirm");
  text("confirm-text", QUESTIONS[action](campaign));
  const yes = $("confirm-yes");
  yes.textContent = "Yes, " + action;
  yes.className = action === "cancel" ? "danger" : "";
  yes.onclick = async () => {
    dialog.close();
    try {
      await call("POST", "/ui/campaigns/" + encodeURIComponent(campaign) + "/" + action);
      renderCampaign(await call("GET", "/ui/campaigns/" + encodeURIComponent(campaign) + "/live"));
      showError("");
    } catch (err) {
      showError(action + ": " + String(err.message || err));
    }
  };
  $("confirm-no").onclick = () => dialog.close();
  dialog.showModal();
}

// --- the list -------------------------------------------------------------------------

async function pollList() {
  try {
    const body = await call("GET", "/ui/campaigns");
    const tbody = $("campaigns").querySelector("tbody");
    tbody.replaceChildren();
    for (const c of body.campaigns) {
      const s = c.states;
      const tr = el("tr", { "data-campaign": c.campaign });
      const name = el("td");
      name.appendChild(el("a", { href: "/campaigns/" + encodeURIComponent(c.campaign) }, c.campaign));
      tr.append(name, el("td", { class: "num" }, c.total), el("td", { class: "num" }, (s.queued || 0) + (s.retrying || 0)),
        el("td", { class: "num" }, s.dialing || 0), el("td", { class: "num" }, s.in_doubt || 0),
        el("td", { class: "num" }, s.originated || 0), el("td", { class: "num" }, s.failed || 0),
        el("td", { class: "num" }, (s.cancelled || 0) + (s.expired || 0) + (s.skipped || 0)));
      tbody.appendChild(tr);
    }
    $("list-empty").hidden = body.campaigns.length > 0;
    text("updated", "Updated " + clock(Date.now() / 1000) + " (every 5 s; the first 200 campaigns by id).");
    document.body.dataset.loaded = "1";
  } catch (err) {
    text("updated", String(err.message || err));
  }
  setTimeout(pollList, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  const view = document.body.dataset.view;
  if (view === "campaign") {
    const campaign = document.body.dataset.campaign;
    for (const action of ["pause", "resume", "cancel"]) {
      $(action).addEventListener("click", () => confirmThen(action, campaign));
    }
    pollCampaign(campaign);
  } else if (view === "list") {
    pollList();
  }
});
