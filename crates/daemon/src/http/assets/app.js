// kura's dashboard: polls /api/dashboard every second and redraws; the
// countdowns tick every quarter second between polls. Text from the server is
// only ever set as text (never parsed as HTML).
"use strict";

const POLL_MS = 1000;
const TICK_MS = 250;
let offsetMs = 0; // server clock minus this browser's clock

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    // Styles through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    if (k === "style") Object.assign(e.style, v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function human(secs) {
  secs = Math.max(0, Math.round(secs));
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
  if (secs < 86400) return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
  return Math.floor(secs / 86400) + " d " + Math.floor((secs % 86400) / 3600) + " h";
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function time(t) {
  return t ? new Date(t).toLocaleString() : "-";
}

function replace(id, ...nodes) {
  const box = document.getElementById(id);
  box.replaceChildren(...nodes.flat());
}

function table(head, rows, attrs) {
  return el("table", attrs, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function systemRow(s) {
  const rpo = s.max_age_secs === null ? "not watched" : s.late ? "LATE" : "ok";
  return el("tr", { "data-system": s.name, class: s.late ? "late" : null },
    el("td", {}, s.name),
    el("td", { class: "num" }, s.age_secs === null ? "never" : human(s.age_secs)),
    el("td", { class: "num" }, s.max_age_secs === null ? "-" : human(s.max_age_secs)),
    el("td", { class: s.late ? "late" : "ok" }, rpo),
    el("td", { class: s.last_outcome || "" }, s.last_outcome || "-"),
    el("td", { class: "num" }, s.last_run_secs === null || s.last_run_secs === undefined ? "-" : human(s.last_run_secs)),
    el("td", { class: "num" }, bytes(s.last_run_bytes)),
    el("td", {}, s.running ? "running" : time(s.next_run)));
}

function renderSystems(systems) {
  if (systems.length === 0) return replace("systems", el("p", { class: "muted" }, "No systems configured."));
  const rows = [];
  for (const tier of [3, 2, 1, 0]) {
    const inTier = systems.filter((s) => s.priority === tier);
    if (inTier.length === 0) continue;
    rows.push(el("tr", { class: "tier" }, el("td", { colspan: 8 }, "Priority " + tier)));
    inTier.forEach((s) => rows.push(systemRow(s)));
  }
  const head = ["system", "backup age", "allowed age", "RPO", "last run", "took", "stored", "next run"];
  replace("systems", table(head, rows, { id: "systems-table" }));
}

function renderJobs(running) {
  if (running.length === 0) return replace("jobs", el("p", { class: "muted" }, "No job is running."));
  const rows = running.map((r) => el("tr", {},
    el("td", {}, r.job), el("td", {}, r.state), el("td", {}, r.trigger),
    el("td", { class: "num" }, r.elapsed_secs === null ? "-" : human(r.elapsed_secs)),
    el("td", { class: "num" }, bytes(r.bytes_done))));
  replace("jobs", table(["job", "state", "trigger", "elapsed", "done"], rows));
}

function progress(s) {
  if (s.progress_percent === null) return "-";
  const pct = Math.round(s.progress_percent);
  return el("span", {}, el("span", { class: "bar-bg" }, el("div", { class: "bar-fg", style: { width: pct + "%" } })),
    " " + pct + " %");
}

function result(s) {
  if (s.verdict === "met") return el("span", { class: "met" }, "met, " + human(s.margin_secs) + " spare");
  if (s.verdict === "missed") return el("span", { class: "missed" }, "MISSED by " + human(-s.margin_secs));
  if (s.deadline_at && s.time_left_secs !== null) {
    return el("span", { class: "countdown", "data-due": s.deadline_at }, "");
  }
  return s.error ? el("span", { class: "failed" }, s.error) : "-";
}

function recoveryRow(s) {
  return el("tr", { "data-system": s.name, "data-state": s.state },
    el("td", {}, s.name),
    el("td", { class: "num" }, s.priority),
    el("td", { class: "state state-" + s.state }, s.state),
    el("td", {}, progress(s)),
    el("td", {}, s.deadline_at ? time(s.deadline_at) : "none"),
    el("td", {}, result(s)));
}

function renderRecovery(rec, now) {
  if (!rec) return;
  const run = rec.run;
  const title = el("p", {},
    "Run " + run.id + " (" + run.status + "), plan " + run.plan_name +
    (run.incident ? ", incident " + run.incident : "") + ", clock started " + time(run.clock_start));
  const rows = rec.systems.map(recoveryRow);
  const head = ["system", "priority", "state", "progress", "deadline", "time left / result"];
  replace("recovery", title, table(head, rows, { id: "recovery-table", "data-status": run.status }));
  renderGantt(rec, now);
  tick();
}

function renderGantt(rec, now) {
  const start = Date.parse(rec.run.clock_start);
  let end = rec.run.ended_at ? Date.parse(rec.run.ended_at) : now;
  for (const s of rec.systems) {
    if (s.ended_at) end = Math.max(end, Date.parse(s.ended_at));
  }
  // The chart spans the run so far plus a quarter; deadlines beyond it are in the table.
  const span = Math.max((end - start) * 1.25, 10000);
  const pct = (t) => Math.max(0, Math.min(100, ((t - start) * 100) / span)).toFixed(2) + "%";
  const rows = rec.systems.map((s) => {
    const track = el("div", { class: "track" });
    if (s.started_at) {
      const a = Date.parse(s.started_at);
      const b = s.ended_at ? Date.parse(s.ended_at) : now;
      const left = pct(a);
      const width = Math.max(0.3, (Math.max(b - a, 0) * 100) / span).toFixed(2) + "%";
      track.append(el("div", { class: "span " + s.state, "data-system": s.name, style: { left: left, width: width } }));
    }
    const due = s.deadline_at ? Date.parse(s.deadline_at) : null;
    if (due !== null && due <= start + span) track.append(el("div", { class: "deadline", style: { left: pct(due) } }));
    return el("div", { class: "row" }, el("div", { class: "label" }, s.name), track);
  });
  replace("gantt", rows, el("div", { class: "axis" }, "0 … " + human(span / 1000) + " since the clock started"));
}

function eventText(ev) {
  const parts = [];
  for (const [k, v] of Object.entries(ev)) {
    if (k === "kind" || v === null || typeof v === "object") continue;
    parts.push(k + ": " + (k === "snapshot" ? String(v).slice(0, 8) : v));
  }
  return parts.join(", ");
}

function renderIncident(inc) {
  if (!inc) return;
  const i = inc.incident;
  const items = inc.timeline.map((e) => el("li", { "data-kind": e.event.kind },
    el("span", { class: "muted" }, time(e.at)), " ", el("strong", {}, e.event.kind), " ", eventText(e.event)));
  replace("incident",
    el("p", {}, "Incident " + i.id + " (" + i.status + "), opened " + time(i.opened_at) + (i.title ? ": " + i.title : "")),
    el("ol", { class: "timeline", id: "timeline" }, items));
  replace("reports",
    el("p", {}, el("a", { href: "/reports/incident/" + i.id, id: "incident-report" }, "Incident " + i.id + " report (HTML)")),
    el("p", { class: "muted" }, "Other formats: ", el("code", {}, "kura report --incident " + i.id + " --format md|json|csv")));
}

function tick() {
  const now = Date.now() + offsetMs;
  for (const c of document.querySelectorAll(".countdown")) {
    const left = Math.round((Date.parse(c.dataset.due) - now) / 1000);
    c.textContent = left >= 0 ? human(left) + " left" : "OVERDUE by " + human(-left);
    c.className = left >= 0 ? "countdown" : "countdown overdue";
  }
}

function render(v) {
  const d = v.status.daemon;
  const now = Date.parse(d.now);
  offsetMs = now - Date.now();
  document.getElementById("daemon").textContent =
    "daemon " + d.version + " (pid " + d.pid + "), repository " + d.repository + (d.stopping ? " (STOPPING)" : "");
  document.getElementById("updated").textContent = "updated " + time(d.now);
  renderSystems(v.status.systems);
  renderJobs(v.status.running);
  renderRecovery(v.recovery, now);
  renderIncident(v.incident);
  if (!v.incident) replace("reports", el("p", { class: "muted" }, "No incident, no report yet."));
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

async function poll() {
  try {
    const r = await fetch("/api/dashboard", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) {
      document.getElementById("daemon").textContent = "not authorized: open this page as /?token=TOKEN";
    } else if (r.ok) {
      render(await r.json());
    } else {
      document.getElementById("daemon").textContent = "the daemon answered " + r.status;
    }
  } catch (e) {
    document.getElementById("daemon").textContent = "the daemon does not answer (" + e + ")";
  }
  setTimeout(poll, POLL_MS);
}

// The token has set its cookie: take it out of the address bar and the history.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/");
setInterval(tick, TICK_MS);
poll();
