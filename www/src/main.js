// The edgeintel dashboard: token entry, live streams (single-use tickets,
// reconnect with backoff and jitter, keepalive pings), a world map, window
// charts, insights, alert rules, performance and a profile lookup.
// Everything comes from the authenticated API; nothing is made up: a panel
// without data says so.
import uPlot from "uplot";
import { geoNaturalEarth1, geoPath, geoGraticule10, geoInterpolate } from "d3-geo";
import { feature, mesh } from "topojson-client";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "edgeintel-token";
const token = () => sessionStorage.getItem(TOKEN_KEY) ?? "";
const api = (path, init = {}) =>
  fetch(`./api/${path}`, { cache: "no-store", ...init, headers: { Authorization: `Bearer ${token()}`, ...(init.headers ?? {}) } });
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const human = (s) => String(s ?? "").replace(/_/g, " ");
const SEV = { low: 0, medium: 1, high: 2, critical: 3 };
const LEVELS = ["low", "medium", "high", "critical"];
const COLORS = { low: "#22c55e", medium: "#eab308", high: "#f97316", critical: "#ef4444" };
const levelOfScore = (t) => (t >= 90 ? "critical" : t >= 75 ? "high" : t >= 40 ? "medium" : "low");
const maxLevel = (...ls) => LEVELS[Math.max(...ls.map((l) => SEV[l] ?? 0))];
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const timeOf = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const dateTimeOf = (t) =>
  new Date(t).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const isoOf = (t) => {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
};
const place = (city, cc) => [city, cc].filter(Boolean).join(", ");

// ---------- login ----------
let started = false;
async function login(candidate, { quiet = false } = {}) {
  const err = $("login-error");
  const button = $("login-form").querySelector("button");
  if (!candidate) {
    err.textContent = "Enter the admin token.";
    err.hidden = false;
    return false;
  }
  button.disabled = true;
  button.textContent = "Checking…";
  sessionStorage.setItem(TOKEN_KEY, candidate);
  // Any authenticated endpoint tells a wrong token (401) from a right one;
  // analytics may answer 404/503 on a deployment without them: still signed in.
  const res = await api("intelligence/analytics").catch(() => null);
  const body = res && !res.ok ? await res.json().catch(() => ({})) : {};
  button.disabled = false;
  button.textContent = "Open the dashboard";
  let msg = null;
  if (!res) msg = "The API did not answer: is the Worker running?";
  else if (res.status === 401) msg = "That token was not accepted (401 unauthorized). Check ADMIN_TOKEN and try again.";
  else if (body.error === "admin_token_unset") msg = "The API is disabled: ADMIN_TOKEN is not set on this Worker.";
  else if (res.status >= 500 && body.error !== "analytics_unavailable") msg = `The API answered ${res.status}${body.message ? `: ${body.message}` : ""}.`;
  if (msg) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (!quiet || res?.status !== 401) {
      err.textContent = msg;
      err.hidden = false;
    }
    $("token").focus();
    $("token").select();
    return false;
  }
  err.hidden = true;
  $("token").value = "";
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
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// ---------- streams ----------
const streams = {};
function connect(name, path, onMessage) {
  const pill = $(`conn-${name}`);
  const label = name === "intel" ? "intelligence" : "performance";
  let attempt = 0;
  let countdown = null;
  let keepalive = null;
  let lastMessage = 0;
  const set = (state, text) => {
    pill.dataset.state = state;
    pill.textContent = `${label}: ${text}`;
  };
  const open = async () => {
    clearInterval(countdown);
    set("connecting", "connecting");
    try {
      const t = await api("stream-ticket", { method: "POST" });
      if (t.status === 401) {
        set("error", "token rejected");
        return;
      }
      if (!t.ok) throw new Error(`ticket: ${t.status}`);
      const { ticket } = await t.json();
      if (!ticket) throw new Error("ticket: empty");
      const url = new URL(`./api/${path}?ticket=${encodeURIComponent(ticket)}`, location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url);
      streams[name] = ws;
      ws.onopen = () => {
        attempt = 0;
        lastMessage = Date.now();
        set("live", "live");
        if (name === "intel") sendFilter();
        // Keepalive: the runtime answers pings without waking the object; a
        // silent socket (no pong, no data for 75 s) is considered dead.
        keepalive = setInterval(() => {
          if (Date.now() - lastMessage > 75_000) return ws.close(4000, "stale");
          if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
        }, 30_000);
      };
      ws.onmessage = (m) => {
        lastMessage = Date.now();
        let msg;
        try {
          msg = JSON.parse(m.data);
        } catch {
          return;
        }
        if (msg.type === "pong") return;
        onMessage(msg);
      };
      ws.onclose = () => {
        clearInterval(keepalive);
        if (streams[name] === ws) retry();
      };
    } catch {
      retry();
    }
  };
  const retry = () => {
    // Exponential backoff with jitter: a deploy drops every socket at once,
    // and clients must not all come back in the same second.
    const delay = Math.min(30_000, 1000 * 2 ** attempt++) * (0.5 + Math.random());
    const until = Date.now() + delay;
    const tick = () => set("reconnecting", `reconnecting in ${Math.max(1, Math.ceil((until - Date.now()) / 1000))} s`);
    tick();
    clearInterval(countdown);
    countdown = setInterval(tick, 500);
    setTimeout(open, delay);
  };
  open();
}

// ---------- feed ----------
const feed = [];
let filter = { type: "", sev: "", country: "" };
function sendFilter() {
  const ws = streams.intel;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const f = {};
  if (filter.sev) f.minSeverity = filter.sev;
  if (filter.country) f.countries = [filter.country];
  const eventTypes = filter.type && !["alert", "insight"].includes(filter.type) ? [filter.type] : undefined;
  const msg = Object.keys(f).length || eventTypes ? { type: "subscribe", ...(eventTypes ? { eventTypes } : {}), filter: f } : { type: "unsubscribe" };
  ws.send(JSON.stringify(msg));
}
function applyFilter() {
  const country = $("f-country").value.trim().toUpperCase();
  if (country && !/^[A-Z0-9]{2}$/.test(country)) {
    $("filter-text").textContent = "A country is a two-letter code, like DE.";
    $("filter-status").dataset.state = "error";
    $("f-country").focus();
    return;
  }
  filter = { type: $("f-type").value, sev: $("f-sev").value, country };
  const parts = [filter.type && human(filter.type), filter.sev && `${filter.sev}+`, filter.country].filter(Boolean);
  $("filter-text").textContent = parts.length ? `Showing ${parts.join(" · ")} (also sent to the server as a subscription).` : "All events.";
  $("filter-status").dataset.state = "";
  $("f-clear").hidden = !parts.length;
  sendFilter();
  renderFeed();
}
$("feed-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  applyFilter();
});
for (const id of ["f-type", "f-sev"]) $(id).addEventListener("change", applyFilter);
$("f-clear").addEventListener("click", () => {
  $("f-type").value = "";
  $("f-sev").value = "";
  $("f-country").value = "";
  applyFilter();
  $("f-type").focus();
});

function feedItem(m) {
  if (m.type === "intelligence_update") {
    const ev = m.data?.event ?? {};
    const d = ev.data ?? {};
    const g = d.geolocation;
    const bits = [];
    if (g) bits.push(place(g.city, g.countryCode) || "unknown place");
    if (isNum(d.threatScore)) bits.push(`threat ${Math.round(d.threatScore)}`);
    if (isNum(d.reputationScore)) bits.push(`reputation ${Math.round(d.reputationScore)}`);
    const desc = typeof d.metadata?.description === "string" ? d.metadata.description : "";
    const flags = (d.behavioralFlags ?? []).map(human).filter((f) => !desc.startsWith(f));
    if (flags.length) bits.push(flags.join(", "));
    if (desc) bits.push(desc);
    if (ev.source && ev.source !== "edgeintel") bits.push(`via ${ev.source}`);
    return { kind: ev.eventType, sev: ev.priority ?? "low", country: m.data.country, ip: ev.ip, at: ev.timestamp ?? m.timestamp, text: bits.join(" · ") || (m.data.country ?? "") };
  }
  if (m.type === "alert" && m.data?.alert) {
    const a = m.data.alert;
    return { kind: "alert", sev: a.severity ?? "high", country: m.data.country, ip: m.data.ip, at: a.timestamp ?? m.timestamp, text: a.description?.startsWith(human(a.type)) ? a.description : `${human(a.type)}: ${a.description ?? ""}` };
  }
  if (m.type === "insight") {
    const x = m.data?.pattern ?? m.data?.anomaly ?? m.data?.trend ?? m.data ?? {};
    const text = x.description ?? (x.metric ? `${human(x.metric)} ${x.scope ? `(${x.scope}) ` : ""}${isNum(x.z) ? `z=${x.z.toFixed(1)}` : x.direction ?? ""}` : "insight");
    return { kind: "insight", sev: x.severity ?? "medium", at: m.timestamp, text };
  }
  if (m.type === "error") return { kind: "error", sev: "medium", at: m.timestamp, text: `server: ${m.data?.message ?? m.data?.error ?? "error"}` };
  return null;
}
function passes(it) {
  if (filter.type && it.kind !== filter.type) return false;
  if (filter.sev && (SEV[it.sev] ?? 0) < SEV[filter.sev]) return false;
  if (filter.country && it.country !== filter.country) return false;
  return true;
}
// Masked IPs (`203.0.113.x`, with IP_HASH_KEY) and hashes cannot be looked up.
const canLookUp = (ip) => typeof ip === "string" && /^[0-9a-f:.]+(\/64)?$/i.test(ip);
function renderFeed() {
  const shown = feed.filter(passes).slice(0, 200);
  $("feed").innerHTML = shown
    .map(
      (it) =>
        `<li class="sev-${esc(it.sev)}" data-country="${esc(it.country ?? "")}"><time datetime="${esc(isoOf(it.at))}">${esc(timeOf(it.at))}</time>` +
        `<span class="kind k-${esc(it.kind)}">${esc(human(it.kind))} <span class="sevtag">${esc(it.sev)}</span></span>` +
        (it.ip ? (canLookUp(it.ip) ? `<button type="button" class="ip" data-ip="${esc(it.ip)}" title="Look up ${esc(it.ip)}">${esc(it.ip)}</button>` : `<span class="ip">${esc(it.ip)}</span>`) : `<span></span>`) +
        `<span class="text">${esc(it.text)}</span></li>`,
    )
    .join("");
  if (!shown.length) $("feed").innerHTML = `<li class="empty">${feed.length ? "no event matches the filter" : "waiting for events…"}</li>`;
  $("feed-count").textContent = feed.length ? `${shown.length} shown of ${feed.length}` : "waiting for events";
}
$("feed").addEventListener("click", (e) => {
  const ip = e.target?.closest?.("button.ip")?.dataset?.ip;
  if (ip) {
    $("lookup-ip").value = ip;
    lookup(ip);
    $("lookup-title").scrollIntoView({ behavior: "smooth", block: "start" });
  }
});
let feedDirty = false;
function pushFeed(it) {
  feed.unshift(it);
  if (feed.length > 500) feed.length = 500;
  feedDirty = true;
}
function onIntel(m) {
  const it = feedItem(m);
  if (it) pushFeed(it);
  if (m.type === "intelligence_update") mapEvent(m.data);
  if (m.type === "alert" && m.data?.alert?.type === "impossible_travel") travelFromProfile(m.data.ip);
  if (m.type === "insight") scheduleRefresh();
}
setInterval(() => {
  if (feedDirty) {
    feedDirty = false;
    renderFeed();
  }
}, 250);

// ---------- map ----------
const W = 960;
const H = 480;
const canvas = $("map");
const ctx = canvas.getContext("2d");
const dpr = Math.min(2, window.devicePixelRatio || 1);
canvas.width = W * dpr;
canvas.height = H * dpr;
const projection = geoNaturalEarth1().fitExtent([[6, 6], [W - 6, H - 6]], { type: "Sphere" });
const path = geoPath(projection, ctx);
let land = null;
let borders = null;
const points = new Map(); // ip -> {lon, lat, level, at, place}
const arcs = []; // {from:[lon,lat], to:[lon,lat], kind: "jump"|"travel", at, key}
let highlight = []; // the looked-up profile's location history
const POINT_TTL = 15 * 60_000;
fetch("./dist/countries-110m.json")
  .then((r) => r.json())
  .then((topo) => {
    land = feature(topo, topo.objects.countries);
    borders = mesh(topo, topo.objects.countries, (a, b) => a !== b);
    drawMap();
  })
  .catch(() => {});
function mapEvent(d) {
  const ev = d?.event;
  if (!ev) return;
  const prev = points.get(ev.ip);
  const level = maxLevel(levelOfScore(d.threatScore ?? 0), ev.eventType === "location_update" ? "low" : ev.priority);
  const g = ev.data?.geolocation;
  if (g && isNum(g.latitude) && isNum(g.longitude)) {
    const here = { lon: g.longitude, lat: g.latitude, level: prev ? maxLevel(prev.level, level) : level, at: Date.now(), ip: ev.ip, place: place(g.city, g.countryCode) };
    if (prev && (Math.abs(prev.lon - here.lon) > 3 || Math.abs(prev.lat - here.lat) > 3)) addArc([prev.lon, prev.lat], [here.lon, here.lat], "jump", `jump:${ev.ip}:${here.lon},${here.lat}`);
    points.set(ev.ip, here);
  } else if (prev) {
    // A threat or reputation event without a place recolours the IP's point.
    prev.level = maxLevel(prev.level, level);
    prev.at = Date.now();
  }
  if (ev.data?.behavioralFlags?.includes("impossible_travel")) travelFromProfile(ev.ip);
  scheduleMap();
}
function addArc(from, to, kind, key) {
  if (arcs.some((a) => a.key === key)) return;
  arcs.push({ from, to, kind, at: Date.now(), key });
  while (arcs.length > 200) arcs.shift();
}
function addTravel(t) {
  if (!t?.from || !t?.to || ![t.from.latitude, t.from.longitude, t.to.latitude, t.to.longitude].every(isNum)) return false;
  addArc([t.from.longitude, t.from.latitude], [t.to.longitude, t.to.latitude], "travel", `travel:${t.at}:${t.from.ip}:${t.to.ip}`);
  return true;
}
// Impossible-travel alerts carry a description only: the coordinates come
// from the profile's `travel` (one lookup per IP every few seconds at most).
const travelFetched = new Map();
async function travelFromProfile(ip) {
  if (!ip || !canLookUp(ip) || Date.now() - (travelFetched.get(ip) ?? 0) < 5000) return;
  travelFetched.set(ip, Date.now());
  const r = await api(`ip-intelligence/${encodeURIComponent(ip)}`).catch(() => null);
  if (!r?.ok) return;
  const body = await r.json().catch(() => null);
  if (addTravel(body?.profile?.travel)) scheduleMap();
}
let mapQueued = false;
function scheduleMap() {
  if (mapQueued) return;
  mapQueued = true;
  requestAnimationFrame(() => {
    mapQueued = false;
    drawMap();
  });
}
function lineOf(a, b) {
  const interp = geoInterpolate(a, b);
  return { type: "LineString", coordinates: Array.from({ length: 41 }, (_, i) => interp(i / 40)) };
}
function drawMap() {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  ctx.beginPath();
  path({ type: "Sphere" });
  ctx.fillStyle = "#0a1324";
  ctx.fill();
  ctx.beginPath();
  path(geoGraticule10());
  ctx.strokeStyle = "rgba(148,163,184,0.08)";
  ctx.lineWidth = 0.5;
  ctx.stroke();
  if (land) {
    ctx.beginPath();
    path(land);
    ctx.fillStyle = "#1c2940";
    ctx.fill();
    ctx.beginPath();
    path(borders);
    ctx.strokeStyle = "#2c3b55";
    ctx.lineWidth = 0.5;
    ctx.stroke();
  }
  ctx.beginPath();
  path({ type: "Sphere" });
  ctx.strokeStyle = "#334155";
  ctx.lineWidth = 1;
  ctx.stroke();
  const now = Date.now();
  // Marks and labels keep their on-screen size when the map is shown small.
  const k = Math.min(2.4, Math.max(1, W / (canvas.clientWidth || W)));
  for (const [ip, p] of points) if (now - p.at > POINT_TTL) points.delete(ip);
  for (let i = 1; i < highlight.length; i++) {
    ctx.beginPath();
    path(lineOf([highlight[i - 1].longitude, highlight[i - 1].latitude], [highlight[i].longitude, highlight[i].latitude]));
    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = "#e2e8f0";
    ctx.lineWidth = 1.2;
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const a of arcs) {
    ctx.beginPath();
    path(lineOf(a.from, a.to));
    ctx.strokeStyle = a.kind === "travel" ? "#f43f5e" : "rgba(167,139,250,0.8)";
    ctx.lineWidth = (a.kind === "travel" ? 2.2 : 1.2) * Math.sqrt(k);
    ctx.stroke();
    const end = projection(a.to);
    if (end) {
      ctx.beginPath();
      ctx.arc(end[0], end[1], a.kind === "travel" ? 3.5 : 2.5, 0, 2 * Math.PI);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fill();
    }
  }
  const sorted = [...points.values()].sort((a, b) => SEV[a.level] - SEV[b.level]);
  for (const p of sorted) {
    const xy = projection([p.lon, p.lat]);
    if (!xy) continue;
    const age = Math.min(1, (now - p.at) / POINT_TTL);
    const r = (3.5 + SEV[p.level]) * Math.sqrt(k);
    ctx.globalAlpha = 1 - age * 0.6;
    ctx.beginPath();
    ctx.arc(xy[0], xy[1], r + 3 * Math.sqrt(k), 0, 2 * Math.PI);
    ctx.fillStyle = COLORS[p.level] + "33";
    ctx.fill();
    ctx.beginPath();
    ctx.arc(xy[0], xy[1], r, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS[p.level];
    ctx.fill();
    ctx.globalAlpha = 1;
  }
  highlight.forEach((h, i) => {
    const xy = projection([h.longitude, h.latitude]);
    if (!xy) return;
    ctx.beginPath();
    ctx.arc(xy[0], xy[1], 7 * Math.sqrt(k), 0, 2 * Math.PI);
    ctx.strokeStyle = "#f8fafc";
    ctx.lineWidth = 2 * Math.sqrt(k);
    ctx.stroke();
    if (i === highlight.length - 1) {
      ctx.font = `600 ${Math.round(12 * k)}px system-ui, sans-serif`;
      ctx.fillStyle = "#f8fafc";
      const label = h.city || h.countryCode || "";
      const right = xy[0] + 10 * k + ctx.measureText(label).width < W;
      ctx.textAlign = right ? "left" : "right";
      ctx.fillText(label, xy[0] + (right ? 10 : -10) * k, xy[1] - 8 * k);
      ctx.textAlign = "left";
    }
  });
  const travel = arcs.filter((a) => a.kind === "travel").length;
  canvas.dataset.points = String(points.size + highlight.length);
  canvas.dataset.arcs = String(arcs.length);
  canvas.dataset.travel = String(travel);
  canvas.setAttribute("aria-label", `World map: ${points.size} recent locations, ${arcs.length} arcs (${travel} impossible travel)`);
  $("map-info").textContent = `${points.size} IPs · ${arcs.length} arcs · last 15 min`;
}
setInterval(scheduleMap, 30_000);
// Hover: the nearest point within a few pixels, with its IP and place.
canvas.addEventListener("mousemove", (e) => {
  const rect = canvas.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * W;
  const y = ((e.clientY - rect.top) / rect.height) * H;
  let best = null;
  let bestD = 10;
  for (const p of points.values()) {
    const xy = projection([p.lon, p.lat]);
    if (!xy) continue;
    const d = Math.hypot(xy[0] - x, xy[1] - y);
    if (d < bestD) [best, bestD] = [p, d];
  }
  const tip = $("map-tip");
  if (!best) {
    tip.hidden = true;
    canvas.style.cursor = "";
    return;
  }
  tip.innerHTML = `<b>${esc(best.ip)}</b><br>${esc(best.place || "unknown place")} · ${esc(best.level)}`;
  tip.style.left = `${e.clientX - rect.left + 12}px`;
  tip.style.top = `${e.clientY - rect.top + 12}px`;
  tip.hidden = false;
  canvas.style.cursor = canLookUp(best.ip) ? "pointer" : "";
  canvas.dataset.hover = best.ip;
});
canvas.addEventListener("mouseleave", () => ($("map-tip").hidden = true));
canvas.addEventListener("click", () => {
  const ip = canvas.dataset.hover;
  if (ip && !$("map-tip").hidden && canLookUp(ip)) {
    $("lookup-ip").value = ip;
    lookup(ip);
  }
});

// ---------- charts ----------
const charts = {};
let xRange = null;
const CHART_H = 150;
function chart(id, label, color, { fmt = (v) => String(v), top = 1 } = {}) {
  const el = $(id);
  const opts = {
    width: el.clientWidth || 300,
    height: CHART_H,
    legend: { show: false },
    cursor: { points: { size: 6 } },
    scales: {
      x: { time: true, range: (u, min, max) => xRange ?? [min, max] },
      y: { range: (u, min, max) => [0, Math.max(top, (max ?? 0) * 1.15)] },
    },
    axes: [
      { stroke: "#94a3b8", grid: { stroke: "rgba(148,163,184,0.1)" }, ticks: { show: false }, values: (u, vs) => vs.map((t) => timeOf(t * 1000)), space: 70, font: "11px system-ui, sans-serif" },
      { stroke: "#94a3b8", grid: { stroke: "rgba(148,163,184,0.1)" }, ticks: { show: false }, values: (u, vs) => vs.map(fmt), size: 44, font: "11px system-ui, sans-serif" },
    ],
    series: [{}, { label, stroke: color, width: 2, fill: color + "26", points: { size: 5 }, spanGaps: false }],
  };
  charts[id] = new uPlot(opts, [[], []], el);
}
function setChart(id, xs, ys) {
  const c = charts[id];
  if (!c) return;
  c.setData([xs, ys]);
  $(id).dataset.hasData = xs.length ? "true" : "false";
}
let resizeQueued = false;
window.addEventListener("resize", () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    for (const [id, c] of Object.entries(charts)) c.setSize({ width: $(id).clientWidth || 300, height: CHART_H });
    drawMap();
  });
});

// ---------- polling: analytics, insights, alert rules, performance ----------
const pct = (v) => (isNum(v) ? `${(v * 100).toFixed(1)}%` : "–");
const ms = (v) => (isNum(v) ? (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`) : "–");
const num = (v) => (isNum(v) ? Math.round(v).toLocaleString() : "–");
async function json(path) {
  const r = await api(path).catch(() => null);
  if (r?.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  }
  return r && r.ok ? r.json().catch(() => null) : null;
}
let refreshing = false;
let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 400);
}
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [a, p, t, an, c, health, alerts, lat, routeRules, fps] = await Promise.all([
      json("intelligence/analytics"),
      json("analytics/patterns"),
      json("analytics/trends"),
      json("analytics/anomalies"),
      json("analytics/correlations"),
      json("performance/health"),
      json("performance/alerts"),
      json("performance/metrics/origin_latency_ms?timeframe=300000"),
      json("config/rules"),
      json("analytics/fingerprints?limit=20"),
    ]);
    renderAnalytics(a);
    renderHealth(health, lat, a);
    renderInsights(p, t, an, c);
    renderRules(alerts);
    renderRouteRules(routeRules, a?.rules);
    renderChallenges(a?.challenges);
    renderFingerprints(fps);
    $("updated").hidden = false;
    $("updated").textContent = `updated ${timeOf(Date.now())}`;
  } finally {
    refreshing = false;
  }
}
function renderAnalytics(a) {
  const slides = Array.isArray(a?.series?.slides) ? [...a.series.slides].sort((x, y) => x.start - y.start) : null;
  $("analytics-note").hidden = !!slides;
  $("analytics-note").textContent = "Analytics: no data yet (the analytics endpoints did not answer). The live feed and lookups still work.";
  if (!slides) {
    for (const id of ["k-requests", "k-risk", "k-unique", "k-high", "k-degraded"]) $(id).textContent = "–";
    for (const id of Object.keys(charts)) setChart(id, [], []);
    return;
  }
  const { slideSeconds: slide = 60, windowSeconds: win = 300 } = a.series;
  const xs = slides.map((s) => s.start);
  const last = xs.length ? xs[xs.length - 1] : Math.floor(Date.now() / 1000 / slide) * slide;
  xRange = [last + slide - win, last + slide];
  setChart("c-requests", xs, slides.map((s) => s.requests));
  setChart("c-risk", xs, slides.map((s) => (s.requests ? s.meanRisk : null)));
  setChart("c-unique", xs, slides.map((s) => s.uniqueIps));
  setChart("c-high", xs, slides.map((s) => (s.requests ? s.highRiskShare : null)));
  const total = slides.reduce((n, s) => n + (s.requests ?? 0), 0);
  const riskSum = slides.reduce((n, s) => n + (s.meanRisk ?? 0) * (s.requests ?? 0), 0);
  const high = slides.reduce((n, s) => n + (s.highRiskShare ?? 0) * (s.requests ?? 0), 0);
  const degraded = slides.reduce((n, s) => n + (s.degraded ?? 0), 0);
  const lastSlide = slides[slides.length - 1];
  $("k-requests").textContent = total.toLocaleString();
  $("k-risk").textContent = total ? (riskSum / total).toFixed(1) : "–";
  $("k-unique").textContent = num(a.activeProfiles);
  $("k-high").textContent = total ? pct(high / total) : "–";
  $("k-degraded").textContent = total ? pct(degraded / total) : "–";
  $("l-requests").textContent = lastSlide ? `latest ${num(lastSlide.requests)}` : "";
  $("l-risk").textContent = lastSlide?.requests ? `latest ${lastSlide.meanRisk.toFixed(1)}` : "";
  $("l-unique").textContent = lastSlide ? `latest ${num(lastSlide.uniqueIps)}` : "";
  $("l-high").textContent = lastSlide?.requests ? `latest ${pct(lastSlide.highRiskShare)}` : "";
  $("window-info").textContent = `${win} s window · ${slide} s slides`;
  $("p-degraded").textContent = total ? `${degraded.toLocaleString()} of ${total.toLocaleString()}` : "–";
  const latest = a.metrics?.latestSlide;
  $("p-consult").textContent = latest?.consultLatency ? `${ms(latest.consultLatency.p50)} / ${ms(latest.consultLatency.p95)}` : "–";
  $("p-errors").textContent = latest ? pct(latest.errorRate) : "–";
  const subs = a.subscriptions ?? {};
  $("p-clients").textContent = `${num(subs.streamClients ?? subs.intelligence)} / ${num(a.queueSize)}`;
}
function renderHealth(health, lat, a) {
  const h = health?.health;
  $("k-p95").textContent = h ? ms(h.originLatencyP95Ms) : "–";
  $("k-lag").textContent = h ? ms(h.alarmLagMs) : "–";
  $("k-health").textContent = h?.status ?? "–";
  $("k-health").dataset.state = h?.status ?? "";
  if (h && !a) $("k-degraded").textContent = pct(h.degradedShare);
  const lastTick = h?.lastTick ?? a?.metrics?.lastTick;
  $("p-lag").textContent = h ? `${ms(h.alarmLagMs)} / ${lastTick ? timeOf(lastTick) : "–"}` : "–";
  const l = lat?.metrics;
  $("p-lat").textContent = l && l.count ? `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)}` : l ? "no requests measured" : "–";
}
function renderInsights(p, t, an, c) {
  if (!p && !t && !an && !c) {
    $("insights").innerHTML = `<li class="empty">no data yet</li>`;
    return;
  }
  const items = [];
  for (const x of p?.patterns ?? [])
    items.push(`<li class="sev-${esc(x.severity)}"><span class="tag">pattern</span><b>${esc(human(x.kind))}</b> ${esc(x.description ?? x.key ?? "")}${isNum(x.support) ? ` <span class="muted">· support ${num(x.support)}</span>` : ""}</li>`);
  for (const x of an?.anomalies ?? [])
    items.push(`<li class="sev-medium"><span class="tag">anomaly</span><b>${esc(human(x.metric))}</b> ${esc(x.scope ?? "")}: ${isNum(x.value) ? x.value.toFixed(2) : "–"} vs mean ${isNum(x.mean) ? x.mean.toFixed(2) : "–"} <span class="muted">(z=${isNum(x.z) ? x.z.toFixed(1) : "–"})</span></li>`);
  for (const x of (t?.trends ?? []).filter((x) => x.direction && x.direction !== "flat"))
    items.push(`<li class="trend-${esc(x.direction)}"><span class="tag">trend</span><b>${esc(human(x.metric))}</b> ${x.direction === "up" ? "▲ up" : "▼ down"}${isNum(x.changeRate) ? ` ${Math.abs(x.changeRate * 100).toFixed(0)}% over the window` : ""}</li>`);
  for (const x of c?.correlations ?? []) {
    let text;
    if (x.kind === "region_threat") text = `<b>${esc(x.key)}</b> mean threat ${isNum(x.meanThreat) ? x.meanThreat.toFixed(0) : "–"} <span class="muted">over ${num(x.samples)} requests</span>`;
    else if (x.kind === "time_of_day_peak") text = `<b>peak hour ${esc(String(x.hourUtc).padStart(2, "0"))}:00 UTC</b> ${num(x.requests)} requests <span class="muted">vs ${isNum(x.mean) ? x.mean.toFixed(1) : "–"} per hour on average</span>`;
    else if (x.kind === "pearson") text = `<b>${esc(human(x.a))} ↔ ${esc(human(x.b))}</b> r=${isNum(x.r) ? x.r.toFixed(2) : "–"} <span class="muted">over ${num(x.points)} slides</span>`;
    else text = esc(x.description ?? JSON.stringify(x));
    items.push(`<li><span class="tag">correlation</span>${text}</li>`);
  }
  $("insights").innerHTML = items.join("") || `<li class="empty">nothing unusual in the window</li>`;
}
function renderRules(alerts) {
  if (!alerts) {
    $("alerts").innerHTML = `<li class="empty">no data yet</li>`;
    return;
  }
  const rules = alerts.rules ?? alerts.alerts ?? [];
  const order = { firing: 0, pending: 1, resolved: 2 };
  const rows = [...rules]
    .sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3))
    .map(
      (r) =>
        `<li class="state-${esc(r.state)}"><span class="state">${esc(r.state)}</span><b>${esc(human(r.rule))}</b> <span class="muted">${esc(r.message ?? "")}</span>` +
        `${isNum(r.value) ? ` <span class="muted">· now ${esc(Number(r.value.toFixed(3)))}${isNum(r.threshold) ? ` / ${esc(r.threshold)}` : ""}</span>` : ""}` +
        `${r.since && r.state !== "inactive" ? ` <span class="muted">· since ${esc(timeOf(r.since))}</span>` : ""}</li>`,
    );
  $("alerts").innerHTML = rows.join("") || `<li class="empty">no rule evaluated yet</li>`;
}
// ---------- challenges ----------
// Issued, solved, failed, abandoned and solve time over the analytics
// window, by trigger (score, rule, step_up) and top reason
// (`challenges` of the analytics API; docs/enforcement.md).
function renderChallenges(list) {
  const body = $("challenges-body");
  const rows = (Array.isArray(list) ? list : []).filter((c) => (c.window?.issued ?? 0) + (c.window?.solved ?? 0) + (c.window?.failed ?? 0) > 0);
  const num = (v) => (isNum(v) ? String(v) : "0");
  body.innerHTML = rows.map((c) => {
    const w = c.window ?? {};
    const by = c.trigger === "rule" ? `rule ${esc(c.rule ?? "")}` : esc(human(c.trigger ?? ""));
    const mean = isNum(w.meanSolveMs) ? `${(w.meanSolveMs / 1000).toFixed(1)} s` : "–";
    return `<tr data-trigger="${esc(c.trigger)}" data-reason="${esc(c.reason)}"><th scope="row">${by}</th><td>${esc(human(c.reason ?? ""))}</td>` +
      ["issued", "solved", "solvedNoscript", "failed", "abandoned", "pending"].map((k) => `<td class="num" data-k="${k}">${num(w[k])}</td>`).join("") +
      `<td class="num" data-k="meanSolveMs">${mean}</td></tr>`;
  }).join("") || `<tr><td colspan="9" class="empty">no challenge in the window</td></tr>`;
}

// ---------- client fingerprints ----------
// The window's most used fingerprints, flagged first (`GET
// /api/analytics/fingerprints`; docs/enforcement.md "Client fingerprints").
function renderFingerprints(reply) {
  const body = $("fingerprints-body");
  if (!reply) {
    body.innerHTML = `<tr><td colspan="8" class="empty">no data yet</td></tr>`;
    return;
  }
  const counts = (o) => Object.entries(o ?? {}).sort((x, y) => y[1] - x[1]).slice(0, 3).map(([k, n]) => `${esc(human(k))} <span class="muted">${esc(n)}</span>`).join(", ");
  const rows = (Array.isArray(reply.fingerprints) ? reply.fingerprints : []).map((f) => {
    const judged = [f.swarm ? '<span class="tag">swarm</span>' : "", f.libraryOnly ? '<span class="tag">library only</span>' : ""].join(" ").trim() || '<span class="muted">–</span>';
    return `<tr data-fp="${esc(f.id)}"><th scope="row"><code>${esc(f.id)}</code></th><td data-k="judged">${judged}</td>` +
      `<td class="num" data-k="requests">${esc(num(f.requests))}</td><td class="num" data-k="risky">${isNum(f.riskyShare) ? pct(f.riskyShare) : "–"}</td>` +
      `<td class="num" data-k="subjects">${esc(num(f.subjects))}${f.moreSubjects ? "+" : ""}</td><td data-k="asns">${(f.asns ?? []).slice(0, 4).map((a) => `AS${esc(a)}`).join(", ")}</td>` +
      `<td data-k="families">${counts(f.userAgentFamilies)}</td><td data-k="reasons">${counts(f.reasons)}</td></tr>`;
  });
  body.innerHTML = rows.join("") || `<tr><td colspan="8" class="empty">no fingerprint in the window (requests without TLS facts have none)</td></tr>`;
}

// ---------- per-route rules ----------
// The rules in force (stored, then RULES), each with its hits over the
// analytics window (`rules` of the analytics API: per rule and action).
let rulesEdited = false;
function renderRouteRules(config, counters) {
  const body = $("rules-body");
  if (!config) {
    body.innerHTML = `<tr><td colspan="7" class="empty">no data yet</td></tr>`;
    return;
  }
  const stored = Array.isArray(config.rules) ? config.rules : [];
  const vars = Array.isArray(config.fromVars) ? config.fromVars : [];
  const counts = new Map((Array.isArray(counters) ? counters : []).map((c) => [`${c.id}|${c.action}`, c.window ?? {}]));
  const num = (v) => (isNum(v) ? String(v) : "0");
  const row = (r, from) => {
    const w = counts.get(`${r.id}|${r.action}`) ?? {};
    const limit = r.rateLimit ? ` <span class="muted">${esc(r.rateLimit.requests)} / ${esc(r.rateLimit.periodSeconds)} s by ${esc(r.rateLimit.by ?? "subject")}</span>` : "";
    return `<tr data-rule="${esc(r.id)}"><th scope="row">${esc(r.id)}${r.dryRun ? ' <span class="tag">dry run</span>' : ""}</th><td>${esc(human(r.action))}${limit}</td><td>${from}</td>` +
      `<td class="num" data-k="hits">${num(w.hits)}</td><td class="num" data-k="enforced">${num(w.enforced)}</td><td class="num" data-k="dryRunHits">${num(w.dryRunHits)}</td><td class="num" data-k="dryRunWouldEnforce">${num(w.dryRunWouldEnforce)}</td></tr>`;
  };
  const rows = [...stored.map((r) => row(r, "API")), ...vars.map((r) => row(r, "RULES"))];
  const problems = Array.isArray(config.problems) ? config.problems : [];
  body.innerHTML =
    rows.join("") +
    problems.map((p) => `<tr><td colspan="7" class="error">not in force: ${esc(p.field)}: ${esc(p.message)}</td></tr>`).join("") ||
    `<tr><td colspan="7" class="empty">no rules: ENFORCE and its thresholds decide alone</td></tr>`;
  if (!rulesEdited) $("rules-text").value = JSON.stringify(stored, null, 2);
  rulesFromVars = vars;
}
let rulesFromVars = [];

// The what-if preview: the edited rules (then the RULES var's, as they would
// be checked) on the hub's sample of the window's requests, beside the
// rules in force; nothing is saved (POST /api/policy/preview, docs/policies.md).
async function previewRules() {
  const status = $("rules-status");
  const errors = $("rules-errors");
  const out = $("rules-preview-result");
  errors.innerHTML = "";
  out.innerHTML = "";
  let rules;
  try {
    rules = JSON.parse($("rules-text").value);
  } catch (e) {
    status.textContent = `Not JSON: ${e.message}`;
    return;
  }
  if (!Array.isArray(rules)) {
    status.textContent = "The stored rules are a JSON array.";
    return;
  }
  status.textContent = "Evaluating on recent traffic…";
  const res = await api("policy/preview", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rules: [...rules, ...rulesFromVars] }) }).catch(() => null);
  const body = res ? await res.json().catch(() => ({})) : {};
  if (res?.status === 400) {
    status.textContent = body.message ?? "The rules were refused.";
    errors.innerHTML = (body.errors ?? []).map((e) => `<li class="error"><code>${esc(e.field)}</code> ${esc(e.message)}</li>`).join("");
    return;
  }
  if (!res?.ok) {
    status.textContent = res ? `The API answered ${res.status}${body.message ? `: ${body.message}` : ""}.` : "The API did not answer.";
    return;
  }
  status.textContent = `Preview only: nothing was saved. ${body.evaluated} sampled requests, standing for ${body.represents} over ${body.spanSeconds} s.`;
  out.innerHTML = renderPreview(body);
}
function renderPreview(p) {
  const kinds = [["forward", "forwarded"], ["challenge", "challenged"], ["block", "blocked"], ["rate_limit", "429"]];
  const a = p.actions ?? {};
  const c = p.current?.actions ?? {};
  const head = `<tr><th scope="col">Outcome</th><th scope="col">With these rules</th><th scope="col">With the rules in force</th></tr>`;
  const rows = kinds.map(([k, label]) => `<tr data-k="${k}"><th scope="row">${label}</th><td class="num">${esc(a[k] ?? 0)}</td><td class="num">${esc(c[k] ?? 0)}</td></tr>`).join("");
  const byRule = Object.entries(p.byRule ?? {}).map(([id, r]) =>
    `<li data-rule="${esc(id)}"><b>${esc(id)}</b> ${esc(human(r.action))}${r.dryRun ? ' <span class="tag">dry run</span>' : ""}: matched ${esc(r.matched)}, would answer ${esc(r.wouldEnforce)}</li>`).join("");
  const top = (p.topSubjects ?? []).map((s) =>
    `<li><code>${esc(s.subject)}</code> ${esc(s.challenge)} challenged, ${esc(s.block)} blocked, ${esc(s.rate_limit)} limited of ${esc(s.evaluated)}</li>`).join("");
  return `<table class="preview"><caption>Preview on the window's sample</caption><thead>${head}</thead><tbody>${rows}</tbody></table>` +
    `<h3>By rule</h3><ul class="list">${byRule || '<li class="empty">no rule matched a sampled request</li>'}</ul>` +
    `<h3>Most affected</h3><ul class="list">${top || '<li class="empty">no sampled client would be stopped</li>'}</ul>`;
}
$("rules-preview").addEventListener("click", previewRules);
async function saveRules() {
  const status = $("rules-status");
  const errors = $("rules-errors");
  errors.innerHTML = "";
  let rules;
  try {
    rules = JSON.parse($("rules-text").value);
  } catch (e) {
    status.textContent = `Not JSON: ${e.message}`;
    return;
  }
  status.textContent = "Checking…";
  const res = await api("config/rules", { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rules }) }).catch(() => null);
  const body = res ? await res.json().catch(() => ({})) : {};
  if (res?.ok) {
    rulesEdited = false;
    status.textContent = `Saved ${Array.isArray(body.rules) ? body.rules.length : 0} rule(s): in force in this location within 5 s, everywhere within about a minute.`;
    refresh();
  } else if (res?.status === 400) {
    status.textContent = body.message ?? "The rules were refused; nothing was saved.";
    errors.innerHTML = (body.errors ?? []).map((e) => `<li class="error"><code>${esc(e.field)}</code> ${esc(e.message)}</li>`).join("");
  } else {
    status.textContent = res ? `The API answered ${res.status}${body.message ? `: ${body.message}` : ""}; nothing was saved.` : "The API did not answer; nothing was saved.";
  }
}
$("rules-text").addEventListener("input", () => (rulesEdited = true));
$("rules-save").addEventListener("click", saveRules);

function onPerf(m) {
  if (m.type === "alert" && m.data) {
    const d = m.data;
    pushFeed({ kind: "alert", sev: d.severity ?? "high", at: m.timestamp, text: `rule ${human(d.rule)}: ${d.from} → ${d.to}${d.message ? ` (${d.message})` : ""}` });
    scheduleRefresh();
  }
  if (m.type === "performance_metric") scheduleRefresh();
}

// ---------- profile lookup ----------
let lookupSeq = 0;
async function lookup(ip) {
  const out = $("profile");
  const seq = ++lookupSeq;
  if (!ip) {
    out.innerHTML = `<p class="error">Enter an IP address.</p>`;
    return;
  }
  // Obvious typos are caught here; the API validates for real (400 invalid_ip).
  if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(ip) && !/^[0-9a-f:.]*:[0-9a-f:.]*(\/64)?$/i.test(ip)) {
    out.innerHTML = `<p class="error">${esc(ip)} is not an IP address or IPv6 /64.</p>`;
    return;
  }
  out.innerHTML = `<p class="muted">Looking up ${esc(ip)}…</p>`;
  out.setAttribute("aria-busy", "true");
  const r = await api(`ip-intelligence/${encodeURIComponent(ip)}`).catch(() => null);
  const body = r ? await r.json().catch(() => ({})) : {};
  if (seq !== lookupSeq) return;
  out.removeAttribute("aria-busy");
  if (!r) return void (out.innerHTML = `<p class="error">The API did not answer.</p>`);
  if (r.status === 404) return void (out.innerHTML = `<p class="error">No profile for ${esc(ip)}: never seen, expired or erased.</p>`);
  if (r.status === 400) return void (out.innerHTML = `<p class="error">${esc(ip)} is not an IP address or IPv6 /64.</p>`);
  if (!r.ok || !body.profile) return void (out.innerHTML = `<p class="error">${esc(body.message ?? body.error ?? `HTTP ${r.status}`)}</p>`);
  const p = body.profile;
  const m = body.metrics ?? {};
  const hr = m.historyRisk ?? {};
  const contributions = hr.contributions ?? [];
  const maxPts = Math.max(1, ...contributions.map((c) => c.points ?? 0));
  const history = (p.locationHistory ?? []).filter((l) => isNum(l.latitude) && isNum(l.longitude));
  highlight = history.slice(-20);
  addTravel(p.travel);
  drawMap();
  const statuses = m.originStatusInWindow ?? {};
  const level = hr.level ?? levelOfScore(p.threatScore ?? 0);
  const reasons = (p.reasons ?? []).map((x) => (typeof x === "string" ? x : x.code ?? x.reason ?? JSON.stringify(x)));
  const bp = p.behavioralProfile ?? {};
  const tags = [...(bp.patterns ?? []), ...(bp.riskFactors ?? [])];
  out.innerHTML = `
    <div class="profile-head">
      <span class="subject">${esc(p.ip ?? ip)}</span>
      <span class="badge lvl-${esc(level)}">history risk ${esc(hr.score ?? "–")} · ${esc(level)}</span>
    </div>
    <div class="scores">
      <div><span class="label">Threat</span><span class="value lvl-${esc(levelOfScore(p.threatScore ?? 0))}">${esc(num(p.threatScore))}</span></div>
      <div><span class="label">Reputation</span><span class="value">${esc(num(p.reputationScore))}</span></div>
      <div><span class="label">Requests</span><span class="value">${esc(num(p.requestCount))}</span></div>
      <div><span class="label">Confidence</span><span class="value">${isNum(p.confidence) ? Math.round(p.confidence) : "–"}%</span></div>
    </div>
    <dl class="facts">
      <dt>First / last seen</dt><dd>${esc(p.firstSeen ? dateTimeOf(p.firstSeen) : "–")} · ${esc(p.lastSeen ? timeOf(p.lastSeen) : "–")}</dd>
      <dt>Now at</dt><dd>${esc(p.currentLocation ? `${place(p.currentLocation.city, p.currentLocation.countryCode)}${p.currentLocation.asn ? ` · AS${p.currentLocation.asn}` : ""}` : "unknown")}</dd>
      <dt>Requests min / hour / day</dt><dd>${esc(num(m.requestsLastMinute))} / ${esc(num(m.requestsLastHour))} / ${esc(num(m.requestsLastDay))}</dd>
      <dt>In the last ${esc(num(m.windowSeconds))} s</dt><dd>${esc(num(m.probesInWindow))} probes · 401/403 ${esc(num(statuses["401_403"]))} · 404 ${esc(num(statuses["404"]))} · 429 ${esc(num(statuses["429"]))} · 5xx ${esc(num(statuses["5xx"]))}</dd>
      <dt>Countries · ASNs</dt><dd>${esc((p.countries ?? []).join(", ") || "–")} · ${esc((p.asns ?? []).map((a) => `AS${a}`).join(", ") || "–")}</dd>
      ${tags.length ? `<dt>Patterns</dt><dd>${tags.map((t) => `<span class="chip">${esc(human(t))}</span>`).join(" ")}</dd>` : ""}
      ${reasons.length ? `<dt>Reasons</dt><dd>${reasons.map((t) => `<span class="chip">${esc(human(t))}</span>`).join(" ")}</dd>` : ""}
      ${p.travel?.description ? `<dt>Travel</dt><dd class="travel">${esc(p.travel.description)}</dd>` : ""}
    </dl>
    <h3>Reasons from history</h3>
    <ul class="bars">${contributions.map((c) => `<li><span class="reason">${esc(human(c.reason))}</span><span class="bar"><i data-width="${Math.round(((c.points ?? 0) / maxPts) * 100)}"></i></span><span class="pts">+${esc(c.points)}</span></li>`).join("") || `<li class="empty">none</li>`}</ul>
    <h3>Alerts</h3>
    <ul class="list">${(p.alerts ?? []).slice(-10).reverse().map((a) => `<li class="sev-${esc(a.severity)}"><span class="tag">${esc(a.severity)}</span><b>${esc(human(a.type))}</b> ${esc(a.description)} <span class="muted">· ${esc(a.timestamp ? timeOf(a.timestamp) : "")}</span></li>`).join("") || `<li class="empty">none</li>`}</ul>
    <h3>Location history <span class="muted">(newest first; dashed on the map)</span></h3>
    <div class="table-wrap"><table class="history"><thead><tr><th scope="col">When</th><th scope="col">Place</th><th scope="col">Network</th></tr></thead><tbody>
    ${(p.locationHistory ?? []).slice(-20).reverse().map((l) => `<tr><td>${esc(dateTimeOf(l.timestamp))}</td><td>${esc(place(l.city, l.countryCode) || "–")}${l.region ? ` <span class="muted">${esc(l.region)}</span>` : ""}</td><td>${l.asn ? `AS${esc(l.asn)}` : ""}${l.colo ? ` <span class="muted">${esc(l.colo)}</span>` : ""}</td></tr>`).join("") || `<tr><td colspan="3" class="empty">no place recorded</td></tr>`}
    </tbody></table></div>`;
  // Bar widths through the CSSOM: the page's Content-Security-Policy allows no
  // inline style attributes.
  for (const bar of out.querySelectorAll("i[data-width]")) bar.style.width = `${Number(bar.dataset.width)}%`;
}
$("lookup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  lookup($("lookup-ip").value.trim());
});

// ---------- start ----------
function start() {
  if (started) return;
  started = true;
  $("conn-intel").hidden = false;
  $("conn-perf").hidden = false;
  chart("c-requests", "requests", "#38bdf8", { top: 5 });
  chart("c-risk", "mean risk", "#eab308", { fmt: (v) => v.toFixed(0), top: 10 });
  chart("c-unique", "unique IPs", "#a78bfa", { top: 5 });
  chart("c-high", "high-risk share", "#f43f5e", { fmt: (v) => `${Math.round(v * 100)}%`, top: 0.1 });
  renderFeed();
  connect("intel", "intelligence/stream", onIntel);
  connect("perf", "performance/stream", onPerf);
  refresh();
  setInterval(refresh, 5000);
  $("main").focus({ preventScroll: true });
}
if (token()) login(token(), { quiet: true });
else $("token").focus();
