// The edgeintel dashboard: token entry, live streams (tickets, reconnect with
// backoff), a world map, window charts, insights, alerts, performance and a
// profile lookup. Everything comes from the authenticated API; nothing is
// made up: a panel without data says so.
import uPlot from "uplot";
import { geoNaturalEarth1, geoPath, geoGraticule10, geoInterpolate } from "d3-geo";
import { feature } from "topojson-client";

const $ = (id) => document.getElementById(id);
const api = (path, init = {}) =>
  fetch(`./api/${path}`, { ...init, headers: { Authorization: `Bearer ${token()}`, ...(init.headers ?? {}) } });
const token = () => sessionStorage.getItem("edgeintel-token") ?? "";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const SEV = { low: 0, medium: 1, high: 2, critical: 3 };
const COLORS = { low: "#22c55e", medium: "#f59e0b", high: "#f97316", critical: "#ef4444" };
const levelOfScore = (t) => (t >= 90 ? "critical" : t >= 75 ? "high" : t >= 40 ? "medium" : "low");

// ---------- login ----------
async function login(candidate) {
  sessionStorage.setItem("edgeintel-token", candidate);
  const res = await api("intelligence/analytics").catch(() => null);
  if (!res || res.status !== 200) {
    sessionStorage.removeItem("edgeintel-token");
    const body = res ? await res.json().catch(() => ({})) : {};
    const msg = res?.status === 401 ? "That token was not accepted." : body.message ?? "The API did not answer.";
    const err = $("login-error");
    err.textContent = msg;
    err.hidden = false;
    return false;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  start();
  return true;
}
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("token").value.trim());
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("edgeintel-token");
  location.reload();
});

// ---------- streams ----------
const streams = {};
function connect(name, path, onMessage) {
  const pill = $(`conn-${name}`);
  let attempt = 0;
  const set = (state, text) => {
    pill.dataset.state = state;
    pill.textContent = `${name === "intel" ? "intelligence" : "performance"}: ${text}`;
  };
  const open = async () => {
    set("connecting", "connecting");
    try {
      const t = await api("stream-ticket", { method: "POST" });
      if (t.status === 401) return set("error", "token rejected");
      const { ticket } = await t.json();
      const url = new URL(`./api/${path}?ticket=${encodeURIComponent(ticket)}`, location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url);
      streams[name] = ws;
      ws.onopen = () => {
        attempt = 0;
        set("live", "live");
        if (name === "intel") sendFilter();
      };
      ws.onmessage = (m) => {
        try {
          onMessage(JSON.parse(m.data));
        } catch {}
      };
      ws.onclose = () => retry();
    } catch {
      retry();
    }
  };
  const retry = () => {
    // Exponential backoff with jitter: deploys drop every socket at once.
    const delay = Math.min(30_000, 500 * 2 ** attempt++) * (0.5 + Math.random());
    set("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s`);
    setTimeout(open, delay);
  };
  open();
}

// ---------- feed ----------
const feed = [];
let filter = { type: "", sev: "", country: "" };
function sendFilter() {
  const ws = streams.intel;
  if (!ws || ws.readyState !== 1) return;
  const f = {};
  if (filter.sev) f.minSeverity = filter.sev;
  if (filter.country) f.countries = [filter.country];
  const eventTypes = filter.type && !["alert", "insight"].includes(filter.type) ? [filter.type] : undefined;
  ws.send(JSON.stringify(Object.keys(f).length || eventTypes ? { type: "subscribe", eventTypes, filter: f } : { type: "unsubscribe" }));
}
$("feed-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  filter = { type: $("f-type").value, sev: $("f-sev").value, country: $("f-country").value.trim().toUpperCase() };
  sendFilter();
  renderFeed();
});
function feedItem(m) {
  if (m.type === "intelligence_update") {
    const ev = m.data.event;
    const g = ev.data?.geolocation;
    return { kind: ev.eventType, sev: ev.priority, country: m.data.country, ip: ev.ip, at: m.timestamp,
      text: `${ev.eventType.replace(/_/g, " ")}${g ? ` · ${[g.city, g.countryCode].filter(Boolean).join(", ")}` : ""}${ev.data?.threatScore !== undefined ? ` · threat ${ev.data.threatScore}` : ""}${ev.data?.behavioralFlags?.length ? ` · ${ev.data.behavioralFlags.join(", ")}` : ""}` };
  }
  if (m.type === "alert") return { kind: "alert", sev: m.data.alert?.severity ?? "high", country: m.data.country, ip: m.data.ip, at: m.timestamp, text: m.data.alert?.description ?? "" };
  if (m.type === "insight") {
    const x = m.data.pattern ?? m.data.anomaly ?? {};
    return { kind: "insight", sev: x.severity ?? "medium", at: m.timestamp, text: x.description ?? `${x.metric} anomaly (${x.scope}, z=${Number(x.z).toFixed(1)})` };
  }
  return null;
}
function passes(it) {
  if (filter.type && it.kind !== filter.type) return false;
  if (filter.sev && (SEV[it.sev] ?? 0) < SEV[filter.sev]) return false;
  if (filter.country && it.country !== filter.country) return false;
  return true;
}
function renderFeed() {
  $("feed").innerHTML = feed
    .filter(passes)
    .slice(0, 150)
    .map((it) => `<li class="sev-${esc(it.sev)}"><time>${esc(new Date(it.at).toLocaleTimeString())}</time><span class="kind">${esc(it.kind)}</span>${it.ip ? `<button type="button" class="ip" data-ip="${esc(it.ip)}">${esc(it.ip)}</button>` : ""}<span class="text">${esc(it.text)}</span></li>`)
    .join("");
}
$("feed").addEventListener("click", (e) => {
  const ip = e.target?.dataset?.ip;
  if (ip && !ip.includes("x") && !ip.startsWith("h:")) {
    $("lookup-ip").value = ip;
    lookup(ip);
  }
});
let feedDirty = false;
function onIntel(m) {
  const it = feedItem(m);
  if (it) {
    feed.unshift(it);
    feed.length = Math.min(feed.length, 500);
    feedDirty = true;
  }
  if (m.type === "intelligence_update") mapEvent(m.data);
}
setInterval(() => {
  if (feedDirty) {
    feedDirty = false;
    renderFeed();
  }
}, 300);

// ---------- map ----------
const canvas = $("map");
const ctx = canvas.getContext("2d");
const projection = geoNaturalEarth1().fitSize([canvas.width, canvas.height], { type: "Sphere" });
const path = geoPath(projection, ctx);
let land = null;
const points = new Map(); // ip -> {lon, lat, level, at}
const arcs = []; // {from:[lon,lat], to:[lon,lat], kind, at}
fetch("./dist/countries-110m.json").then((r) => r.json()).then((topo) => {
  land = feature(topo, topo.objects.countries);
  drawMap();
});
function mapEvent(d) {
  const g = d.event.data?.geolocation;
  if (!g || g.latitude === undefined) return;
  const prev = points.get(d.event.ip);
  const here = { lon: g.longitude, lat: g.latitude, level: levelOfScore(d.threatScore ?? 0), at: Date.now() };
  if (prev && (Math.abs(prev.lon - here.lon) > 5 || Math.abs(prev.lat - here.lat) > 5)) arcs.push({ from: [prev.lon, prev.lat], to: [here.lon, here.lat], kind: "jump", at: Date.now() });
  points.set(d.event.ip, here);
  scheduleMap();
}
let mapQueued = false;
function scheduleMap() {
  if (!mapQueued) {
    mapQueued = true;
    requestAnimationFrame(() => {
      mapQueued = false;
      drawMap();
    });
  }
}
let highlight = [];
function drawMap() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.beginPath();
  path({ type: "Sphere" });
  ctx.fillStyle = "#0b1220";
  ctx.fill();
  ctx.beginPath();
  path(geoGraticule10());
  ctx.strokeStyle = "#1e293b";
  ctx.lineWidth = 0.5;
  ctx.stroke();
  if (land) {
    ctx.beginPath();
    path(land);
    ctx.fillStyle = "#1f2a3d";
    ctx.fill();
    ctx.strokeStyle = "#334155";
    ctx.stroke();
  }
  const cutoff = Date.now() - 15 * 60_000;
  for (const [ip, p] of points) if (p.at < cutoff) points.delete(ip);
  while (arcs.length > 200) arcs.shift();
  for (const a of arcs) {
    const interp = geoInterpolate(a.from, a.to);
    ctx.beginPath();
    path({ type: "LineString", coordinates: Array.from({ length: 33 }, (_, i) => interp(i / 32)) });
    ctx.strokeStyle = a.kind === "travel" ? "#ef4444" : "#a78bfa";
    ctx.lineWidth = a.kind === "travel" ? 2 : 1;
    ctx.stroke();
  }
  for (const p of points.values()) {
    const xy = projection([p.lon, p.lat]);
    if (!xy) continue;
    ctx.beginPath();
    ctx.arc(xy[0], xy[1], 4, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS[p.level];
    ctx.fill();
  }
  for (const h of highlight) {
    const xy = projection([h.longitude, h.latitude]);
    if (!xy) continue;
    ctx.beginPath();
    ctx.arc(xy[0], xy[1], 6, 0, 2 * Math.PI);
    ctx.strokeStyle = "#e2e8f0";
    ctx.lineWidth = 2;
    ctx.stroke();
  }
  canvas.dataset.points = String(points.size + highlight.length);
  canvas.dataset.arcs = String(arcs.length);
}

// ---------- charts and panels ----------
const charts = {};
function chart(id, label, color, fmt = (v) => v) {
  const el = $(id);
  const opts = {
    width: el.clientWidth || 300,
    height: 140,
    legend: { show: false },
    scales: { x: { time: true } },
    axes: [{ stroke: "#94a3b8", grid: { stroke: "#1e293b" } }, { stroke: "#94a3b8", grid: { stroke: "#1e293b" }, values: (u, vs) => vs.map(fmt) }],
    series: [{}, { label, stroke: color, width: 2, fill: color + "22" }],
  };
  charts[id] = new uPlot(opts, [[], []], el);
}
function setChart(id, xs, ys) {
  charts[id]?.setData([xs, ys]);
}
window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) c.setSize({ width: $(id).clientWidth || 300, height: 140 });
});

const pctFmt = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const ms = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(v < 10 ? 1 : 0)} ms`);
async function json(path) {
  const r = await api(path).catch(() => null);
  return r && r.ok ? r.json() : null;
}
async function refresh() {
  const [a, p, t, an, health, alerts, lat] = await Promise.all([
    json("intelligence/analytics"),
    json("analytics/patterns"),
    json("analytics/trends"),
    json("analytics/anomalies"),
    json("performance/health"),
    json("performance/alerts"),
    json("performance/metrics/origin_latency_ms"),
  ]);
  if (a) {
    const slides = a.series.slides;
    const xs = slides.map((s) => s.start);
    setChart("c-requests", xs, slides.map((s) => s.requests));
    setChart("c-risk", xs, slides.map((s) => s.meanRisk));
    setChart("c-unique", xs, slides.map((s) => s.uniqueIps));
    setChart("c-high", xs, slides.map((s) => s.highRiskShare));
    const total = slides.reduce((n, s) => n + s.requests, 0);
    const riskSum = slides.reduce((n, s) => n + s.meanRisk * s.requests, 0);
    const high = slides.reduce((n, s) => n + s.highRiskShare * s.requests, 0);
    const degraded = slides.reduce((n, s) => n + s.degraded, 0);
    $("k-requests").textContent = total.toLocaleString();
    $("k-risk").textContent = total ? (riskSum / total).toFixed(1) : "–";
    $("k-unique").textContent = Math.round(a.activeProfiles).toLocaleString();
    $("k-high").textContent = total ? pctFmt(high / total) : "–";
    $("k-degraded").textContent = total ? pctFmt(degraded / total) : "–";
    $("window-info").textContent = `(${a.series.windowSeconds} s window, ${a.series.slideSeconds} s slides)`;
    $("p-degraded").textContent = degraded.toLocaleString();
    const latest = a.metrics.latestSlide;
    $("p-consult").textContent = latest ? `${ms(latest.consultLatency.p50)} / ${ms(latest.consultLatency.p95)}` : "–";
  }
  if (health) {
    const h = health.health;
    $("k-p95").textContent = ms(h.originLatencyP95Ms);
    $("k-lag").textContent = ms(h.alarmLagMs);
    $("k-health").textContent = h.status;
    $("k-health").dataset.state = h.status;
    $("p-lag").textContent = `${ms(h.alarmLagMs)} / ${h.lastTick ? new Date(h.lastTick).toLocaleTimeString() : "–"}`;
  }
  if (lat) $("p-lat").textContent = `${ms(lat.metrics.p50)} / ${ms(lat.metrics.p95)} / ${ms(lat.metrics.p99)}`;
  const items = [];
  for (const x of p?.patterns ?? []) items.push(`<li class="sev-${esc(x.severity)}"><b>${esc(x.kind.replace(/_/g, " "))}</b> ${esc(x.description)}</li>`);
  for (const x of (t?.trends ?? []).filter((x) => x.direction !== "flat")) items.push(`<li><b>trend</b> ${esc(x.metric.replace(/_/g, " "))} ${esc(x.direction)} (${(x.changeRate * 100).toFixed(0)}% over the window)</li>`);
  for (const x of an?.anomalies ?? []) items.push(`<li class="sev-medium"><b>anomaly</b> ${esc(x.metric)} ${esc(x.scope)}: ${Number(x.value).toFixed(1)} vs mean ${Number(x.mean).toFixed(1)} (z=${Number(x.z).toFixed(1)})</li>`);
  $("insights").innerHTML = items.join("") || `<li class="empty">nothing unusual in the window</li>`;
  const al = (alerts?.rules ?? []).map((r) => `<li class="state-${esc(r.state)}"><b>${esc(r.rule)}</b> ${esc(r.state)} · ${esc(r.message ?? "")}${r.value !== null && r.value !== undefined ? ` · value ${Number(r.value).toFixed(3)}` : ""}</li>`);
  $("alerts").innerHTML = al.join("") || `<li class="empty">no rule evaluated yet</li>`;
}
function onPerf(m) {
  if (m.type === "alert") {
    feed.unshift({ kind: "alert", sev: m.data.severity ?? "high", at: m.timestamp, text: `rule ${m.data.rule}: ${m.data.from} → ${m.data.to} (${m.data.message})` });
    feedDirty = true;
  }
  if (m.type === "performance_metric") refresh();
}

// ---------- profile lookup ----------
async function lookup(ip) {
  const out = $("profile");
  out.innerHTML = "<p>Loading…</p>";
  const r = await api(`ip-intelligence/${encodeURIComponent(ip)}`).catch(() => null);
  if (!r) return (out.innerHTML = `<p class="error">The API did not answer.</p>`);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) return (out.innerHTML = `<p class="error">${esc(body.message ?? body.error)}</p>`);
  const p = body.profile;
  const m = body.metrics;
  const contributions = m.historyRisk?.contributions ?? [];
  highlight = (p.locationHistory ?? []).filter((l) => l.latitude !== undefined);
  if (p.travel?.from && p.travel?.to) arcs.push({ from: [p.travel.from.longitude, p.travel.from.latitude], to: [p.travel.to.longitude, p.travel.to.latitude], kind: "travel", at: Date.now() });
  drawMap();
  out.innerHTML = `
    <div class="scores">
      <div><span class="label">Threat</span><span class="value">${esc(p.threatScore)}</span></div>
      <div><span class="label">Reputation</span><span class="value">${esc(p.reputationScore)}</span></div>
      <div><span class="label">Requests</span><span class="value">${esc(p.requestCount)}</span></div>
      <div><span class="label">Confidence</span><span class="value">${Math.round(p.confidence)}%</span></div>
    </div>
    <p>${esc(p.ip)} · first seen ${esc(new Date(p.firstSeen).toLocaleString())} · countries ${esc((p.countries ?? []).join(", ") || "–")}</p>
    <h3>Reasons from history</h3>
    <ul class="list">${contributions.map((c) => `<li><b>${esc(c.reason)}</b> +${esc(c.points)}</li>`).join("") || `<li class="empty">none</li>`}</ul>
    <h3>Alerts</h3>
    <ul class="list">${(p.alerts ?? []).slice(-10).reverse().map((a) => `<li class="sev-${esc(a.severity)}"><b>${esc(a.type)}</b> ${esc(a.description)}</li>`).join("") || `<li class="empty">none</li>`}</ul>
    <h3>Location history</h3>
    <table class="history"><thead><tr><th>When</th><th>Place</th><th>ASN</th></tr></thead><tbody>
    ${(p.locationHistory ?? []).slice(-20).reverse().map((l) => `<tr><td>${esc(new Date(l.timestamp).toLocaleString())}</td><td>${esc([l.city, l.countryCode].filter(Boolean).join(", "))}</td><td>${esc(l.asn ?? "")}</td></tr>`).join("")}
    </tbody></table>`;
}
$("lookup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  lookup($("lookup-ip").value.trim());
});

// ---------- start ----------
function start() {
  chart("c-requests", "requests", "#38bdf8");
  chart("c-risk", "mean risk", "#f59e0b", (v) => v.toFixed(0));
  chart("c-unique", "unique IPs", "#a78bfa");
  chart("c-high", "high-risk share", "#ef4444", (v) => `${(v * 100).toFixed(0)}%`);
  connect("intel", "intelligence/stream", onIntel);
  connect("perf", "performance/stream", onPerf);
  refresh();
  setInterval(refresh, 5000);
}
if (token()) login(token());
