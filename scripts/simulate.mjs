// Traffic simulator: geo-varied requests to edgeintel running under
// `wrangler dev` (or Miniflare), using the local-only `MF-CF-Blob` header that
// replaces `request.cf` there (Cloudflare itself ignores it). Personas:
// visitors from real cities, a Tor client, hosting-ASN scanners, a curl-like
// bot, a page scraper, a credential stuffer (a script claiming Chrome on the
// scraper's TLS stack), a traveller whose session hops continents, Googlebot
// from Google's network and a fake one from a hosting network, and (when
// `simulate` is given an agent, as `npm start` does) an AI agent on a hosting
// network that signs its requests with Web Bot Auth. Each request
// carries the TLS facts of its client's software (made-up values in
// Cloudflare's shape), so the client fingerprints have something to tell apart.
// Addresses are from documentation ranges (RFC 5737 / RFC 3849), never real
// people's; the one exception is the real Googlebot's, from Google's published
// crawler ranges.
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { signedHeaders } from "./web-bot-auth.mjs";

/** Real cities: coordinates, a residential ISP's ASN, the nearest colo. */
export const CITIES = [
  { city: "Berlin", country: "DE", region: "Land Berlin", regionCode: "BE", continent: "EU", postal: "10117", lat: 52.52, lon: 13.405, tz: "Europe/Berlin", asn: 3320, org: "Deutsche Telekom AG", colo: "FRA", eu: true, lang: "de-DE,de;q=0.9,en;q=0.8" },
  { city: "Paris", country: "FR", region: "Île-de-France", regionCode: "IDF", continent: "EU", postal: "75001", lat: 48.8566, lon: 2.3522, tz: "Europe/Paris", asn: 3215, org: "Orange", colo: "CDG", eu: true, lang: "fr-FR,fr;q=0.9" },
  { city: "London", country: "GB", region: "England", regionCode: "ENG", continent: "EU", postal: "EC1A", lat: 51.5074, lon: -0.1278, tz: "Europe/London", asn: 2856, org: "British Telecommunications PLC", colo: "LHR", lang: "en-GB,en;q=0.9" },
  { city: "Madrid", country: "ES", region: "Madrid", regionCode: "MD", continent: "EU", postal: "28013", lat: 40.4168, lon: -3.7038, tz: "Europe/Madrid", asn: 3352, org: "Telefonica de Espana", colo: "MAD", eu: true, lang: "es-ES,es;q=0.9" },
  { city: "Warsaw", country: "PL", region: "Mazovia", regionCode: "14", continent: "EU", postal: "00-001", lat: 52.2297, lon: 21.0122, tz: "Europe/Warsaw", asn: 5617, org: "Orange Polska", colo: "WAW", eu: true, lang: "pl-PL,pl;q=0.9" },
  { city: "Stockholm", country: "SE", region: "Stockholm County", regionCode: "AB", continent: "EU", postal: "111 20", lat: 59.3293, lon: 18.0686, tz: "Europe/Stockholm", asn: 3301, org: "Telia Company AB", colo: "ARN", eu: true, lang: "sv-SE,sv;q=0.9" },
  { city: "New York", country: "US", region: "New York", regionCode: "NY", continent: "NA", postal: "10001", lat: 40.7128, lon: -74.006, tz: "America/New_York", asn: 7922, org: "Comcast Cable", colo: "EWR", lang: "en-US,en;q=0.9" },
  { city: "Chicago", country: "US", region: "Illinois", regionCode: "IL", continent: "NA", postal: "60601", lat: 41.8781, lon: -87.6298, tz: "America/Chicago", asn: 7018, org: "AT&T Services", colo: "ORD", lang: "en-US,en;q=0.9" },
  { city: "Los Angeles", country: "US", region: "California", regionCode: "CA", continent: "NA", postal: "90012", lat: 34.0522, lon: -118.2437, tz: "America/Los_Angeles", asn: 20001, org: "Charter Communications", colo: "LAX", lang: "en-US,en;q=0.9" },
  { city: "Toronto", country: "CA", region: "Ontario", regionCode: "ON", continent: "NA", postal: "M5H", lat: 43.6532, lon: -79.3832, tz: "America/Toronto", asn: 812, org: "Rogers Communications", colo: "YYZ", lang: "en-CA,en;q=0.9" },
  { city: "Mexico City", country: "MX", region: "Mexico City", regionCode: "CMX", continent: "NA", postal: "06000", lat: 19.4326, lon: -99.1332, tz: "America/Mexico_City", asn: 8151, org: "Uninet (Telmex)", colo: "MEX", lang: "es-MX,es;q=0.9" },
  { city: "São Paulo", country: "BR", region: "São Paulo", regionCode: "SP", continent: "SA", postal: "01000-000", lat: -23.5505, lon: -46.6333, tz: "America/Sao_Paulo", asn: 28573, org: "Claro NXT", colo: "GRU", lang: "pt-BR,pt;q=0.9" },
  { city: "Buenos Aires", country: "AR", region: "Buenos Aires F.D.", regionCode: "C", continent: "SA", postal: "C1002", lat: -34.6037, lon: -58.3816, tz: "America/Argentina/Buenos_Aires", asn: 7303, org: "Telecom Argentina", colo: "EZE", lang: "es-AR,es;q=0.9" },
  { city: "Lagos", country: "NG", region: "Lagos", regionCode: "LA", continent: "AF", postal: "100001", lat: 6.5244, lon: 3.3792, tz: "Africa/Lagos", asn: 29465, org: "MTN Nigeria", colo: "LOS", lang: "en-NG,en;q=0.9" },
  { city: "Johannesburg", country: "ZA", region: "Gauteng", regionCode: "GP", continent: "AF", postal: "2001", lat: -26.2041, lon: 28.0473, tz: "Africa/Johannesburg", asn: 37457, org: "Telkom SA Ltd.", colo: "JNB", lang: "en-ZA,en;q=0.9" },
  { city: "Mumbai", country: "IN", region: "Maharashtra", regionCode: "MH", continent: "AS", postal: "400001", lat: 19.076, lon: 72.8777, tz: "Asia/Kolkata", asn: 55836, org: "Reliance Jio Infocomm Limited", colo: "BOM", lang: "en-IN,hi;q=0.8" },
  { city: "Singapore", country: "SG", region: "Central Singapore", regionCode: "01", continent: "AS", postal: "048616", lat: 1.3521, lon: 103.8198, tz: "Asia/Singapore", asn: 9506, org: "Singtel Fibre Broadband", colo: "SIN", lang: "en-SG,en;q=0.9" },
  { city: "Tokyo", country: "JP", region: "Tokyo", regionCode: "13", continent: "AS", postal: "100-0001", lat: 35.6762, lon: 139.6503, tz: "Asia/Tokyo", asn: 2516, org: "KDDI Corporation", colo: "NRT", lang: "ja-JP,ja;q=0.9" },
  { city: "Seoul", country: "KR", region: "Seoul", regionCode: "11", continent: "AS", postal: "04524", lat: 37.5665, lon: 126.978, tz: "Asia/Seoul", asn: 4766, org: "Korea Telecom", colo: "ICN", lang: "ko-KR,ko;q=0.9" },
  { city: "Sydney", country: "AU", region: "New South Wales", regionCode: "NSW", continent: "OC", postal: "2000", lat: -33.8688, lon: 151.2093, tz: "Australia/Sydney", asn: 1221, org: "Telstra Corporation Ltd", colo: "SYD", lang: "en-AU,en;q=0.9" },
];

/** Hosting networks the scanners and the credential stuffer come from. */
export const HOSTING = [
  { city: "Amsterdam", country: "NL", region: "North Holland", regionCode: "NH", continent: "EU", postal: "1012", lat: 52.374, lon: 4.8897, tz: "Europe/Amsterdam", asn: 14061, org: "DigitalOcean, LLC", colo: "AMS", eu: true },
  { city: "Roubaix", country: "FR", region: "Hauts-de-France", regionCode: "HDF", continent: "EU", postal: "59100", lat: 50.6942, lon: 3.1746, tz: "Europe/Paris", asn: 16276, org: "OVH SAS", colo: "CDG", eu: true },
  { city: "Falkenstein", country: "DE", region: "Saxony", regionCode: "SN", continent: "EU", postal: "08223", lat: 50.4779, lon: 12.3713, tz: "Europe/Berlin", asn: 24940, org: "Hetzner Online GmbH", colo: "FRA", eu: true },
];

/**
 * TLS facts per client software, in the shape `request.cf` has them on every
 * plan (base64 SHA-1s of the cipher and extension lists, the ClientHello's
 * length). Made up: only their being the same for the same software matters.
 */
const tls = (name, helloLength, httpProtocol = "HTTP/2") => ({
  tlsClientCiphersSha1: Buffer.from(`${name}-ciphers-sha1`).toString("base64").slice(0, 28),
  tlsClientExtensionsSha1: Buffer.from(`${name}-extensions-sha1`).toString("base64").slice(0, 28),
  tlsClientHelloLength: String(helloLength),
  tlsVersion: "TLSv1.3",
  httpProtocol,
});
export const TLS = {
  chrome: tls("chrome", 1781),
  safari: tls("safari", 517),
  firefox: tls("firefox", 1893),
  curl: tls("curl", 517, "HTTP/1.1"),
  python: tls("python", 583, "HTTP/1.1"),
  go: tls("go", 266, "HTTP/1.1"),
  google: tls("googlebot", 254),
};

const HTML_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
/** Real browser User-Agents with the Accept header each sends for a page. */
export const BROWSERS = [
  { ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", accept: "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7", tls: TLS.chrome },
  { ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15", accept: HTML_ACCEPT, tls: TLS.safari },
  { ua: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", accept: HTML_ACCEPT, tls: TLS.firefox },
  { ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", accept: HTML_ACCEPT, tls: TLS.safari },
  { ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", accept: "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7", tls: TLS.chrome },
];
const GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const AGENT_UA = "DemoAgent/1.0 (+https://agent.example/bot)";
/** Google's own network, where its crawler's published ranges are. */
const GOOGLE = { city: "Mountain View", country: "US", region: "California", regionCode: "CA", continent: "NA", postal: "94043", lat: 37.422, lon: -122.084, tz: "America/Los_Angeles", asn: 15169, org: "Google LLC", colo: "SJC" };
/** Site pages, most popular first (chosen Zipf-like). */
export const PAGES = ["/", "/products", "/products/42", "/blog/edge-security", "/about", "/cart", "/products/7", "/login", "/blog/release-notes", "/search?q=shoes", "/account", "/blog/2026/11/black-friday"];
export const PROBES = ["/.env", "/.git/config", "/wp-login.php", "/xmlrpc.php", "/phpmyadmin/", "/cgi-bin/../../etc/passwd", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/admin/.env"];
const SCANNER_UAS = ["python-requests/2.32.3", "Mozilla/5.0 zgrab/0.x", "Go-http-client/1.1", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"];
/** Each scanner User-Agent's TLS stack (zgrab is written in Go; Nmap's scripts use OpenSSL like curl). */
const SCANNER_TLS = [TLS.python, TLS.go, TLS.go, TLS.curl];
const USERS = ["admin", "root", "test", "info", "support", "john.smith@example.com", "maria@example.org", "sales"];
const PASSWORDS = ["123456", "password", "hunter2", "Summer2026!", "qwerty", "letmein"];
/** The traveller's session cookie value: fixed so that runs are comparable. */
export const TRAVELLER_SESSION = "3f9c2a7e51b04d8e9a6c17d2e0b5f48a";

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The `request.cf` object Cloudflare would send for a place and network. */
export function cfFor(p, extra = {}) {
  const cf = { clientAcceptEncoding: "", colo: p.colo, httpProtocol: "HTTP/2", tlsVersion: "TLSv1.3" };
  if (p.country) cf.country = p.country;
  if (p.city) cf.city = p.city;
  if (p.region) cf.region = p.region;
  if (p.regionCode) cf.regionCode = p.regionCode;
  if (p.continent) cf.continent = p.continent;
  if (p.postal) cf.postalCode = p.postal;
  // Cloudflare gives coordinates as strings.
  if (p.lat !== undefined) {
    cf.latitude = p.lat.toFixed(5);
    cf.longitude = p.lon.toFixed(5);
  }
  if (p.tz) cf.timezone = p.tz;
  if (p.asn) cf.asn = p.asn;
  if (p.org) cf.asOrganization = p.org;
  if (p.eu) cf.isEUCountry = "1";
  return { ...cf, ...extra };
}

/** JSON with non-ASCII escaped so it survives as a header value. */
export function asciiJson(v) {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** The `MF-CF-Blob` header value for a place (or a ready cf object with `extra`). */
export function cfBlob(place, extra = {}) {
  return asciiJson(cfFor(place, extra));
}

/** The visitors: two per city, each with a stable documentation address. */
export function visitors(count = 40) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const place = CITIES[i % CITIES.length];
    const v6 = i % 9 === 4;
    const ip = v6 ? `2001:db8:${(i + 1).toString(16)}:1::${(i % 200) + 10}` : `${["198.51.100", "203.0.113", "192.0.2"][i % 3]}.${10 + i}`;
    out.push({ kind: "visitor", id: `visitor-${i + 1}`, ip, place, browser: BROWSERS[i % BROWSERS.length] });
  }
  return out;
}

/**
 * Every persona with its relative weight: visitors Zipf-like (the first ones
 * come back often, the tail rarely), then the suspicious ones.
 */
export function personas() {
  const list = visitors().map((v, i) => ({ ...v, weight: 1 / (i + 1) }));
  list.push({ kind: "tor", id: "tor", ip: "192.0.2.66", weight: 0.08 });
  HOSTING.forEach((place, i) => list.push({ kind: "scanner", id: `scanner-${place.asn}`, ip: `203.0.113.${150 + i}`, place, weight: 0.06 }));
  list.push({ kind: "curl", id: "curl", ip: "198.51.100.77", place: CITIES[6], weight: 0.05 });
  // Enough of a share that its TLS stack is seen from python-requests five
  // times as often as the stuffers claim Chrome on it: ua_fingerprint_mismatch.
  list.push({ kind: "scraper", id: "scraper", ip: "203.0.113.160", place: HOSTING[0], weight: 0.5 });
  HOSTING.forEach((place, i) => list.push({ kind: "stuffer", id: `stuffer-${place.asn}`, ip: `192.0.2.${180 + i}`, place, weight: 0.03 }));
  list.push({ kind: "traveller", id: "traveller", session: TRAVELLER_SESSION, weight: 0.05 });
  list.push({ kind: "googlebot", id: "googlebot", ip: "66.249.66.1", place: GOOGLE, weight: 0.05 });
  list.push({ kind: "fake-googlebot", id: "fake-googlebot", ip: "203.0.113.170", place: HOSTING[1], weight: 0.05 });
  return list;
}

export const PERSONAS = Object.freeze(personas().map((p) => Object.freeze(p)));

const zipfPick = (xs, r) => {
  const total = xs.reduce((s, _, i) => s + 1 / (i + 1), 0);
  let x = r() * total;
  for (let i = 0; i < xs.length; i++) if ((x -= 1 / (i + 1)) <= 0) return xs[i];
  return xs[0];
};

/**
 * One request of a persona: { ip, path, method, headers, cf, body? }.
 * `step` counts this persona's earlier requests (the traveller moves with it);
 * `authority` is the host (and port) requests go to (a signature covers it).
 */
export function buildRequest(persona, r, step = 0, authority = "127.0.0.1:8787") {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const browser = (b, lang) => ({ "User-Agent": b.ua, Accept: b.accept, "Accept-Language": lang });
  const form = { "Content-Type": "application/x-www-form-urlencoded" };
  const login = () => `username=${encodeURIComponent(pick(USERS))}&password=${encodeURIComponent(pick(PASSWORDS))}`;
  switch (persona.kind) {
    case "visitor": {
      const headers = browser(persona.browser, persona.place.lang);
      const cf = cfFor(persona.place, persona.browser.tls);
      if (r() < 0.04) return { ip: persona.ip, path: "/login", method: "POST", headers: { ...headers, ...form }, body: login(), cf };
      return { ip: persona.ip, path: zipfPick(PAGES, r), method: "GET", headers, cf };
    }
    case "tor":
      // Tor exits are reported as country "T1", with no city or coordinates.
      return { ip: persona.ip, path: zipfPick(PAGES, r), method: "GET", headers: browser(BROWSERS[2], "en-US,en;q=0.5"), cf: { clientAcceptEncoding: "", country: "T1", colo: "FRA", asn: 60729, asOrganization: "Stiftung Erneuerbare Freiheit", ...TLS.firefox } };
    case "scanner": {
      const i = Math.floor(r() * SCANNER_UAS.length);
      return { ip: persona.ip, path: pick(PROBES), method: "GET", headers: { "User-Agent": SCANNER_UAS[i], Accept: "*/*" }, cf: cfFor(persona.place, { ...SCANNER_TLS[i], tlsVersion: "TLSv1.2" }) };
    }
    case "curl":
      return { ip: persona.ip, path: zipfPick(PAGES, r), method: "GET", headers: { "User-Agent": "curl/8.5.0", Accept: "*/*" }, cf: cfFor(persona.place, TLS.curl) };
    case "scraper":
      return { ip: persona.ip, path: zipfPick(PAGES, r), method: "GET", headers: { "User-Agent": "python-requests/2.32.3", Accept: "*/*" }, cf: cfFor(persona.place, TLS.python) };
    case "stuffer":
      // A script claiming Chrome: the scraper's TLS stack and header set.
      return { ip: persona.ip, path: "/login", method: "POST", headers: { "User-Agent": BROWSERS[0].ua, Accept: "*/*", ...form }, body: login(), cf: cfFor(persona.place, TLS.python) };
    case "googlebot":
    case "fake-googlebot":
      // The same User-Agent; only the real one comes from Google's ranges (verified_bot, bot_impersonation).
      return { ip: persona.ip, path: r() < 0.1 ? "/robots.txt" : zipfPick(PAGES, r), method: "GET", headers: { "User-Agent": GOOGLEBOT_UA, Accept: "text/html,*/*" }, cf: cfFor(persona.place, persona.kind === "googlebot" ? TLS.google : TLS.go) };
    case "signed-agent": {
      // Hosted: hosting_asn, unless its signature verifies and its origin is
      // trusted (SIGNED_AGENTS_TRUSTED); signed_agent once it verifies.
      const signature = signedHeaders({ key: persona.agent.key, agentOrigin: persona.agent.origin, authority });
      return { ip: persona.ip, path: zipfPick(PAGES, r), method: "GET", headers: { "User-Agent": AGENT_UA, Accept: "text/html,*/*", ...signature }, cf: cfFor(persona.place, TLS.go) };
    }
    case "traveller": {
      // The same session cookie in London, then in Sydney a few minutes later
      // (about a request every 20 s at 5 rps): impossible travel.
      const place = step % 6 < 3 ? CITIES[2] : CITIES[19];
      const ip = place === CITIES[2] ? "198.51.100.200" : "203.0.113.200";
      return { ip, path: zipfPick(PAGES, r), method: "GET", headers: { ...browser(BROWSERS[1], place.lang), Cookie: `ei_session=${persona.session}` }, cf: cfFor(place, BROWSERS[1].tls) };
    }
    default:
      throw new Error(`unknown persona kind ${persona.kind}`);
  }
}

const timeoutSignal = (signal, ms) => {
  const t = AbortSignal.timeout(ms);
  return signal && AbortSignal.any ? AbortSignal.any([signal, t]) : (signal ?? t);
};

/**
 * Sends requests at about `rps` per second until `durationMs` or `signal`.
 * Never throws on a failed request: counts it. Returns { sent, failed, byStatus, byKind }.
 * `agent` ({ key, origin }: scripts/web-bot-auth.mjs) adds the signed agent.
 */
export async function simulate({ target, rps = 5, durationMs = Infinity, signal, log = console.log, seed = 1, agent } = {}) {
  const base = new URL(target); // a bad target is the caller's error: throw now
  if (!(rps > 0)) throw new RangeError("rps must be > 0");
  const r = rng(seed);
  const all = agent ? [...PERSONAS, { kind: "signed-agent", id: "signed-agent", ip: "198.51.100.150", place: HOSTING[2], agent, weight: 0.05 }] : PERSONAS;
  const total = all.reduce((s, p) => s + p.weight, 0);
  const choose = () => {
    let x = r() * total;
    for (const p of all) if ((x -= p.weight) <= 0) return p;
    return all[0];
  };
  const steps = new Map();
  const stats = { sent: 0, failed: 0, byStatus: {}, byKind: {} };
  const started = Date.now();
  let lastLog = started;
  let next = started;
  // Bounded so a stalled target cannot pile up unbounded sockets.
  const maxInflight = Math.max(20, Math.ceil(rps * 10));
  const inflight = new Set();
  const line = () => `[simulate] sent ${stats.sent}, failed ${stats.failed}, in flight ${inflight.size}, statuses ${JSON.stringify(stats.byStatus)}, personas ${JSON.stringify(stats.byKind)}`;
  while (!signal?.aborted && Date.now() - started < durationMs) {
    if (inflight.size >= maxInflight) await Promise.race(inflight);
    const persona = choose();
    const step = steps.get(persona.id) ?? 0;
    steps.set(persona.id, step + 1);
    const req = buildRequest(persona, r, step, base.host);
    const headers = { ...req.headers, "CF-Connecting-IP": req.ip, "MF-CF-Blob": asciiJson(req.cf) };
    const p = fetch(new URL(req.path, base), { method: req.method, headers, body: req.body, redirect: "manual", signal: timeoutSignal(signal, 15_000) })
      .then(async (res) => {
        await res.arrayBuffer();
        stats.byStatus[res.status] = (stats.byStatus[res.status] ?? 0) + 1;
      })
      .catch(() => {
        if (!signal?.aborted) stats.failed++;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    stats.sent++;
    stats.byKind[persona.kind] = (stats.byKind[persona.kind] ?? 0) + 1;
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      log(line());
    }
    // A schedule, not a fixed pause, so slow sends do not lower the rate.
    next += (1000 / rps) * (0.5 + r());
    const wait = Math.min(next - Date.now(), started + durationMs - Date.now());
    if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => {});
    else next = Math.max(next, Date.now() - 1000);
  }
  await Promise.allSettled([...inflight]);
  return stats;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
  };
  const ac = new AbortController();
  process.once("SIGINT", () => ac.abort());
  process.once("SIGTERM", () => ac.abort());
  try {
    const stats = await simulate({
      target: opt("target", "http://127.0.0.1:8787"),
      rps: Number(opt("rps", 5)),
      durationMs: opt("duration") ? Number(opt("duration")) * 1000 : Infinity,
      seed: Number(opt("seed", 1)),
      signal: ac.signal,
    });
    console.log(`[simulate] done: ${JSON.stringify(stats)}`);
  } catch (e) {
    console.error(`[simulate] ${e.message}`);
    process.exit(2);
  }
}
