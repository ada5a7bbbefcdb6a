// The dashboard page: one EventSource on /api/events delivers a snapshot
// per refresh; each page renders from the latest one. Plain DOM, text set
// with textContent only (grain keys are user data). Charts by uPlot.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const withToken = (path) => token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
document.getElementById("api-link").href = withToken("api");

let latest = null;
const charts = {};

const $ = (id) => document.getElementById(id);
const fmt = (n, d = 1) => (n === null || n === undefined || !isFinite(n)) ? "–" : Number(n).toFixed(d);
const int = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");
const ms = (n) => n === 0 ? "0" : (n < 0.01 ? n.toFixed(4) : n < 1 ? n.toFixed(3) : n.toFixed(1));
const bytes = (b) => b == null ? "–" : b > 1 << 30 ? (b / (1 << 30)).toFixed(2) + " GiB" : (b / (1 << 20)).toFixed(1) + " MiB";
const time = (t) => new Date(t).toLocaleTimeString();

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tableId, rows, render, empty = "nothing yet") {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    body.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, empty);
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    body.appendChild(tr);
  }
}

function statusOf(s) {
  return (!s.reachable && s.status !== "dead") ? "unreachable" : s.status;
}

function chart(id, series, data) {
  const el = $(id);
  const width = Math.max(300, el.clientWidth || 420);
  if (!charts[id]) {
    charts[id] = new uPlot({
      width, height: 190,
      series: [{}].concat(series),
      axes: [{}, { size: 50 }],
      scales: { x: { time: true } },
    }, data, el);
  } else {
    charts[id].setData(data);
  }
}

function renderOverview(s) {
  const o = s.overview;
  $("ov-silos").textContent = o.silos_active + " / " + o.silos;
  $("ov-activations").textContent = int(o.activations);
  $("ov-calls-per-sec").textContent = fmt(o.calls_per_sec);
  $("ov-error-rate").textContent = fmt(o.error_rate * 100, 1) + " %";
  $("ov-avg").textContent = ms(o.avg_latency_ms) + " ms";
  $("ov-p99").textContent = ms(o.p99_latency_ms) + " ms";
  $("ov-calls-total").textContent = int(o.calls_total);
  const h = s.history;
  const x = h.map(p => p.at_millis / 1000);
  chart("chart-calls", [
    { label: "calls/s", stroke: "#2f6fde", width: 2 },
    { label: "errors/s", stroke: "#c2322b", width: 2 },
  ], [x, h.map(p => p.calls_per_sec), h.map(p => p.errors_per_sec)]);
  chart("chart-latency", [
    { label: "avg ms", stroke: "#1f8a4c", width: 2 },
    { label: "p99 ms", stroke: "#b7791f", width: 2 },
  ], [x, h.map(p => p.avg_latency_ms), h.map(p => p.p99_latency_ms)]);
  chart("chart-activations", [
    { label: "activations", stroke: "#6b4fd8", width: 2 },
  ], [x, h.map(p => p.activations)]);
  fill("ov-silo-table", s.silos, (tr, v) => {
    cell(tr, v.name + (v.is_self ? " (this silo)" : ""));
    cell(tr, v.endpoint || "–");
    const st = statusOf(v);
    cell(tr, st, "st-" + st);
    cell(tr, int(v.activations));
    cell(tr, fmt(v.calls_per_sec));
    cell(tr, v.cpu_percent == null ? "–" : fmt(v.cpu_percent) + " %");
    cell(tr, bytes(v.rss_bytes));
  });
}

function renderGrains(s) {
  fill("grain-table", s.grain_types, (tr, t) => {
    cell(tr, t.grain_type);
    cell(tr, int(t.activations));
    cell(tr, Object.entries(t.activations_by_silo).map(([k, v]) => k + ": " + v).join(", ") || "–");
    cell(tr, fmt(t.calls_per_sec));
    cell(tr, fmt(t.errors_per_sec));
    cell(tr, int(t.calls_total));
    cell(tr, int(t.errors_total));
    cell(tr, int(t.mailbox_depth));
  });
  const methods = s.grain_types.flatMap(t => t.methods);
  fill("method-table", methods, (tr, m) => {
    cell(tr, m.grain_type);
    cell(tr, m.method);
    cell(tr, fmt(m.calls_per_sec));
    cell(tr, int(m.calls_total));
    cell(tr, int(m.errors_total));
    cell(tr, ms(m.avg_latency_ms));
    cell(tr, ms(m.p99_latency_ms));
  });
}

function renderHot(s) {
  fill("hot-table", s.hottest_grains, (tr, g) => {
    cell(tr, g.grain);
    cell(tr, g.silo);
    cell(tr, fmt(g.calls_per_sec));
  });
  fill("slow-table", s.slowest_methods, (tr, m) => {
    cell(tr, m.grain_type);
    cell(tr, m.method);
    cell(tr, ms(m.p99_latency_ms));
    cell(tr, ms(m.avg_latency_ms));
    cell(tr, int(m.calls_total));
  });
}

function renderSilos(s) {
  const box = $("silo-cards");
  box.replaceChildren();
  for (const v of s.silos) {
    const card = document.createElement("div");
    card.className = "silo-card";
    const h = document.createElement("h3");
    const st = statusOf(v);
    h.textContent = v.name + " — ";
    const span = document.createElement("span");
    span.className = "st-" + st;
    span.textContent = st;
    h.appendChild(span);
    card.appendChild(h);
    const dl = document.createElement("dl");
    const row = (k, val) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = val;
      dl.append(dt, dd);
    };
    row("endpoint", v.endpoint || "–");
    if (v.start_millis) row("started", time(v.start_millis));
    if (v.error) row("error", v.error);
    row("CPU", v.cpu_percent == null ? "–" : fmt(v.cpu_percent) + " % of one core");
    row("memory", bytes(v.rss_bytes));
    row("activations", int(v.activations));
    for (const [t, n] of Object.entries(v.activations_by_type)) row("· " + t, int(n));
    row("suspicions", String(v.suspicions));
    card.appendChild(dl);
    box.appendChild(card);
  }
  fill("membership-table", s.membership_history.slice().reverse(), (tr, e) => {
    cell(tr, time(e.at_millis));
    cell(tr, e.silo);
    cell(tr, e.address);
    cell(tr, e.event, "st-" + (e.event === "joined" ? "active" : e.event === "suspected" ? "joining" : e.event));
    cell(tr, e.detail || "");
  }, s.clustered ? "nothing yet" : "this silo is not in a cluster");
}

function renderReminders(s) {
  const r = s.reminders;
  $("reminders-note").textContent = !r.enabled
    ? "This silo has no reminder service."
    : r.error ? "Cannot read reminders: " + r.error
    : r.count + " reminder(s)" + (r.count > r.reminders.length ? ", the first " + r.reminders.length + " shown" : "");
  fill("reminder-table", r.reminders, (tr, m) => {
    cell(tr, m.grain);
    cell(tr, m.name);
    cell(tr, time(m.due_millis));
    cell(tr, m.period_millis ? (m.period_millis / 1000) + " s" : "once");
  });
}

function renderStreams(s) {
  const st = s.streams || { enabled: false, namespaces: [], partitions: [] };
  $("streams-note").textContent = st.enabled
    ? st.namespaces.length + " namespace(s), " + st.partitions.length + " partition(s) pulled"
    : "No silo reports streams.";
  fill("stream-ns-table", st.namespaces, (tr, n) => {
    cell(tr, n.namespace);
    cell(tr, int(n.published_total));
    cell(tr, fmt(n.published_per_sec));
    cell(tr, int(n.delivered_total));
    cell(tr, fmt(n.delivered_per_sec));
    cell(tr, int(n.redelivered_total));
    cell(tr, int(n.dead_lettered_total));
    cell(tr, int(n.in_flight));
    cell(tr, n.silos.join(", "));
  });
  fill("stream-partition-table", st.partitions, (tr, p) => {
    cell(tr, p.provider);
    cell(tr, String(p.partition));
    cell(tr, p.silo);
    cell(tr, int(p.in_flight));
    cell(tr, p.lag == null ? "–" : int(p.lag));
    cell(tr, int(p.acked));
  });
}

function renderTransactions(s) {
  const tx = s.transactions || { enabled: false, total: {}, aborted_by_reason: [], silos: [] };
  const t = tx.total;
  $("tx-note").textContent = tx.enabled
    ? fmt(t.committed_per_sec) + " committed/s, " + fmt(t.aborted_per_sec) + " aborted/s, " +
      fmt(t.in_doubt_per_sec) + " in doubt/s; mean lock wait " + fmt(t.lock_wait_mean_ms) + " ms"
    : "No silo reports transactions.";
  const rows = tx.enabled ? tx.silos.concat([{ silo: "all silos", figures: t }]) : [];
  fill("tx-silo-table", rows, (tr, r) => {
    const f = r.figures;
    cell(tr, r.silo);
    cell(tr, int(f.committed_total));
    cell(tr, fmt(f.committed_per_sec));
    cell(tr, int(f.aborted_total));
    cell(tr, fmt(f.aborted_per_sec));
    cell(tr, int(f.in_doubt_total));
    cell(tr, fmt(f.in_doubt_per_sec));
    cell(tr, int(f.lock_waits_total));
    cell(tr, fmt(f.lock_wait_mean_ms));
  });
  fill("tx-reason-table", tx.aborted_by_reason, (tr, r) => {
    cell(tr, r.reason);
    cell(tr, int(r.total));
    cell(tr, fmt(r.per_sec));
  });
}

const pages = { overview: renderOverview, grains: renderGrains, hot: renderHot, silos: renderSilos, reminders: renderReminders, streams: renderStreams, transactions: renderTransactions };

function currentPage() {
  const p = location.hash.replace("#", "");
  return pages[p] ? p : "overview";
}

function render() {
  const page = currentPage();
  for (const name of Object.keys(pages)) {
    $("page-" + name).hidden = name !== page;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page);
  }
  if (latest) pages[page](latest);
}

window.addEventListener("hashchange", render);

function connect() {
  const es = new EventSource(withToken("api/events"));
  es.addEventListener("snapshot", (ev) => {
    const snap = JSON.parse(ev.data);
    if (!snap) return;
    latest = snap;
    const st = $("status");
    st.className = "status";
    st.textContent = "served by " + snap.served_by + " · updated " + time(snap.at_millis);
    render();
  });
  es.onerror = () => {
    const st = $("status");
    st.className = "status down";
    st.textContent = "disconnected; retrying…";
  };
}

render();
connect();
