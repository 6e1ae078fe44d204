// pylab dashboard: polls /api/state once a second and updates the page in place
// (cards are created once per process and then only their text changes, so buttons
// stay put while you click them). Actions are POSTs carrying the CSRF token.
"use strict";

const TOKEN = document.querySelector('meta[name="csrf-token"]').content;
const TIER_NAMES = ["virtual IP (pyvrrp)", "balancers (pylb)", "nodes (pynode)", "stores and other processes"];
const cards = new Map();
const tierEls = new Map();
let autoTimer = null;
let lastVisitors = "";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function say(text, ok) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = "message " + (ok ? "ok" : "error");
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": TOKEN},
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

async function act(name, action, button) {
  button.disabled = true;
  say(action + " " + name + " …", true);
  try {
    const d = await post("/api/process/" + encodeURIComponent(name) + "/" + action);
    say(d.message, true);
  } catch (e) {
    say(action + " " + name + ": " + e.message, false);
  } finally {
    button.disabled = false;
    refresh();
  }
}

function card(p) {
  let c = cards.get(p.name);
  if (c) return c;
  const f = {};
  f.state = el("span", {class: "state", "data-testid": "state-" + p.name});
  f.pid = el("span"); f.addr = el("span");
  f.metrics = el("div", {class: "metrics"});
  f.extra = el("div");
  const kill = el("button", {"data-testid": "kill-" + p.name, title: "kill -9 (pylab kill " + p.name + ")"}, "kill");
  kill.addEventListener("click", () => act(p.name, "kill", kill));
  const restart = el("button", {"data-testid": "restart-" + p.name, title: "pylab restart " + p.name}, "restart");
  restart.addEventListener("click", () => act(p.name, "restart", restart));
  const box = el("div", {class: "card", "data-testid": "proc-" + p.name},
    el("div", {class: "title"}, p.name + " ", el("span", {class: "kind"}, p.kind)),
    el("div", {}, f.state, " pid ", f.pid, " ", f.addr),
    f.metrics, f.extra, el("div", {class: "buttons"}, kill, restart));
  c = {box, f, tier: p.tier};
  cards.set(p.name, c);
  return c;
}

function fmt(v, suffix = "") { return v === null || v === undefined ? "–" : v + suffix; }

function renderProcesses(state) {
  const tiers = document.getElementById("tiers");
  const seen = new Set();
  const groups = new Map();
  for (const p of state.processes) {
    seen.add(p.name);
    const c = card(p);
    c.box.className = "card " + p.state + (p.holds_vip ? " vip" : "");
    c.f.state.textContent = state.busy && state.busy[p.name] ? state.busy[p.name] + "…" : p.state;
    c.f.state.className = "state " + p.state;
    c.f.pid.textContent = p.pid;
    c.f.addr.textContent = p.host + ":" + p.port + (p.entry ? " (entry)" : "");
    const m = [];
    if (p.kind === "pynode") {
      m.push("requests " + fmt(p.requests), fmt(p.rps, " req/s"), "sessions " + fmt(p.sessions));
      if (p.manager) {
        const g = p.manager;
        let t = "manager " + g.kind + (g.send ? " (" + g.send + ")" : "") + (g.mode ? " (" + g.mode + ")" : "");
        if (g.primary !== undefined) t += " · primary " + g.primary + " · proxies " + fmt(g.proxies);
        if (g.members) t += " · members " + (g.members.length ? g.members.join(", ") : "none");
        m.push(t);
      }
    } else if (p.kind === "pylb") {
      m.push("requests " + fmt(p.requests), fmt(p.rps, " req/s"));
      if (p.holds_vip) m.push("holds the VIP");
    } else if (p.kind === "pyvrrp" && p.vrrp) {
      m.push(p.vrrp.state, "prio " + fmt(p.vrrp.priority));
      if (p.vrrp.vip) m.push("VIP " + p.vrrp.vip);
    }
    if (p.health_error) m.push(p.health_error);
    c.f.metrics.replaceChildren(...m.map(t => el("span", {}, t)));
    if (p.kind === "pylb" && p.members && p.members.length) {
      const rows = p.members.map(mb => el("tr", {class: mb.down || mb.fails ? "failed" : ""},
        el("td", {}, "→ " + mb.name), el("td", {}, fmt(mb.requests) + " req"),
        el("td", {}, mb.down ? "down" : (mb.fails ? "fails " + mb.fails : "ok"))));
      c.f.extra.replaceChildren(el("table", {class: "members"}, ...rows));
    } else {
      c.f.extra.replaceChildren();
    }
    if (!groups.has(p.tier)) groups.set(p.tier, []);
    groups.get(p.tier).push(c.box);
  }
  for (const [name, c] of [...cards.entries()]) if (!seen.has(name)) { c.box.remove(); cards.delete(name); }
  // move elements only when they are not already in place, so a button is never replaced
  // under the pointer
  const order = [...groups.keys()].sort();
  for (const [t, pair] of [...tierEls.entries()]) if (!groups.has(t)) { pair.arrow.remove(); pair.row.remove(); tierEls.delete(t); }
  order.forEach((t, i) => {
    let pair = tierEls.get(t);
    if (!pair) {
      pair = {arrow: el("div", {class: "arrow"}, "↓ " + TIER_NAMES[t]),
              row: el("div", {class: "tier", "data-testid": "tier-" + t})};
      tierEls.set(t, pair);
    }
    if (tiers.children[2 * i] !== pair.arrow) tiers.insertBefore(pair.arrow, tiers.children[2 * i] || null);
    if (tiers.children[2 * i + 1] !== pair.row) tiers.insertBefore(pair.row, tiers.children[2 * i + 1] || null);
    groups.get(t).forEach((box, j) => {
      if (pair.row.children[j] !== box) pair.row.insertBefore(box, pair.row.children[j] || null);
    });
  });
}

function renderTrace(trace) {
  const tbody = document.querySelector("#trace tbody");
  tbody.replaceChildren(...trace.records.map(r => {
    const cls = r.outcome.startsWith("LOST") ? "lost" : (r.status === 200 ? "" : "err");
    return el("tr", {class: cls, "data-testid": "trace-row"},
      el("td", {}, r.seq), el("td", {}, new Date(r.t * 1000).toLocaleTimeString()),
      el("td", {}, r.visitor), el("td", {class: "path"}, r.path.join(" → ")),
      el("td", {}, fmt(r.status)), el("td", {}, r.latency_ms.toFixed(1)), el("td", {}, fmt(r.value)),
      el("td", {}, r.session_id || "–"), el("td", {}, r.outcome));
  }));
  const sb = document.querySelector("#sessions tbody");
  sb.replaceChildren(...trace.visitors.map(v => el("tr", {"data-testid": "session-" + v.name},
    el("td", {}, v.name), el("td", {}, v.session_id || "–"), el("td", {}, fmt(v.home)),
    el("td", {}, fmt(v.backup)), el("td", {}, fmt(v.store)), el("td", {}, fmt(v.last_node)),
    el("td", {}, v.value), el("td", {}, v.requests), el("td", {}, v.lost))));
  const names = trace.visitors.map(v => v.name).join(",");
  if (names !== lastVisitors) {
    const sel = document.getElementById("visitor");
    const keep = sel.value;
    sel.replaceChildren(...trace.visitors.map(v => el("option", {value: v.name}, v.name)));
    if (trace.visitors.some(v => v.name === keep)) sel.value = keep;
    lastVisitors = names;
  }
}

let inflight = false;
async function refresh() {
  if (inflight) return;
  inflight = true;
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    const state = await r.json();
    document.getElementById("lab").textContent = state.lab || "(no lab running)";
    document.getElementById("description").textContent = state.description || state.message || "";
    const entry = document.getElementById("entry");
    entry.textContent = state.entry_url ? state.entry + " " + state.entry_url : "–";
    entry.href = state.entry_url || "#";
    const vip = document.getElementById("vip");
    vip.textContent = state.vip ? ("· VIP " + fmt(state.vip.vip) + " held by " + fmt(state.vip.holder) +
      (state.vip.balancer ? " → " + state.vip.balancer : "")) : "";
    renderProcesses(state);
    if (state.trace) renderTrace(state.trace);
    document.getElementById("poll").textContent = "· updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("poll").textContent = "· dashboard unreachable: " + e.message;
  } finally {
    inflight = false;
  }
}

async function send(count, newVisitor) {
  try {
    const d = await post("/api/trace", {count, visitor: document.getElementById("visitor").value, new_visitor: !!newVisitor});
    if (newVisitor) { lastVisitors = ""; await refresh(); document.getElementById("visitor").value = d.visitor; }
  } catch (e) { say("tracer: " + e.message, false); }
  refresh();
}

document.getElementById("send1").addEventListener("click", () => send(1));
document.getElementById("send10").addEventListener("click", () => send(10));
document.getElementById("newvisitor").addEventListener("click", () => send(1, true));
document.getElementById("clear").addEventListener("click", async () => { await post("/api/trace", {reset: true}); lastVisitors = ""; refresh(); });
document.getElementById("auto").addEventListener("change", e => {
  if (autoTimer) { clearInterval(autoTimer); autoTimer = null; }
  if (e.target.checked) autoTimer = setInterval(() => send(1), 1000);
});
refresh();
setInterval(refresh, 1000);
