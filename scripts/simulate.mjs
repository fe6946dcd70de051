// Traffic simulator: geo-varied requests to edgeintel running under
// `wrangler dev` (or Miniflare), using the local-only `MF-CF-Blob` header that
// replaces `request.cf` there (Cloudflare itself ignores it). Personas:
// visitors from real cities, a Tor client, hosting-ASN scanners, a curl-like
// bot, a credential stuffer, and a traveller whose session hops continents.
// Addresses are from documentation ranges (RFC 5737 / RFC 3849).
import { pathToFileURL } from "node:url";

/** Real cities: coordinates, a residential ISP's ASN, the nearest colo. */
export const CITIES = [
  { city: "Berlin", country: "DE", region: "Land Berlin", lat: 52.52, lon: 13.405, tz: "Europe/Berlin", asn: 3320, org: "Deutsche Telekom AG", colo: "FRA", eu: true, lang: "de-DE,de;q=0.9,en;q=0.8" },
  { city: "Paris", country: "FR", region: "Île-de-France", lat: 48.8566, lon: 2.3522, tz: "Europe/Paris", asn: 3215, org: "Orange", colo: "CDG", eu: true, lang: "fr-FR,fr;q=0.9" },
  { city: "London", country: "GB", region: "England", lat: 51.5074, lon: -0.1278, tz: "Europe/London", asn: 2856, org: "British Telecommunications PLC", colo: "LHR", lang: "en-GB,en;q=0.9" },
  { city: "Madrid", country: "ES", region: "Madrid", lat: 40.4168, lon: -3.7038, tz: "Europe/Madrid", asn: 3352, org: "Telefonica de Espana", colo: "MAD", eu: true, lang: "es-ES,es;q=0.9" },
  { city: "Warsaw", country: "PL", region: "Mazovia", lat: 52.2297, lon: 21.0122, tz: "Europe/Warsaw", asn: 5617, org: "Orange Polska", colo: "WAW", eu: true, lang: "pl-PL,pl;q=0.9" },
  { city: "Stockholm", country: "SE", region: "Stockholm", lat: 59.3293, lon: 18.0686, tz: "Europe/Stockholm", asn: 3301, org: "Telia Company AB", colo: "ARN", eu: true, lang: "sv-SE,sv;q=0.9" },
  { city: "New York", country: "US", region: "New York", lat: 40.7128, lon: -74.006, tz: "America/New_York", asn: 7922, org: "Comcast Cable", colo: "EWR", lang: "en-US,en;q=0.9" },
  { city: "Chicago", country: "US", region: "Illinois", lat: 41.8781, lon: -87.6298, tz: "America/Chicago", asn: 7018, org: "AT&T Services", colo: "ORD", lang: "en-US,en;q=0.9" },
  { city: "Los Angeles", country: "US", region: "California", lat: 34.0522, lon: -118.2437, tz: "America/Los_Angeles", asn: 20001, org: "Charter Communications", colo: "LAX", lang: "en-US,en;q=0.9" },
  { city: "Toronto", country: "CA", region: "Ontario", lat: 43.6532, lon: -79.3832, tz: "America/Toronto", asn: 812, org: "Rogers Communications", colo: "YYZ", lang: "en-CA,en;q=0.9" },
  { city: "Mexico City", country: "MX", region: "Ciudad de México", lat: 19.4326, lon: -99.1332, tz: "America/Mexico_City", asn: 8151, org: "Uninet (Telmex)", colo: "MEX", lang: "es-MX,es;q=0.9" },
  { city: "São Paulo", country: "BR", region: "São Paulo", lat: -23.5505, lon: -46.6333, tz: "America/Sao_Paulo", asn: 28573, org: "Claro NXT", colo: "GRU", lang: "pt-BR,pt;q=0.9" },
  { city: "Buenos Aires", country: "AR", region: "Buenos Aires", lat: -34.6037, lon: -58.3816, tz: "America/Argentina/Buenos_Aires", asn: 7303, org: "Telecom Argentina", colo: "EZE", lang: "es-AR,es;q=0.9" },
  { city: "Lagos", country: "NG", region: "Lagos", lat: 6.5244, lon: 3.3792, tz: "Africa/Lagos", asn: 29465, org: "MTN Nigeria", colo: "LOS", lang: "en-NG,en;q=0.9" },
  { city: "Johannesburg", country: "ZA", region: "Gauteng", lat: -26.2041, lon: 28.0473, tz: "Africa/Johannesburg", asn: 3741, org: "Dimension Data (IS)", colo: "JNB", lang: "en-ZA,en;q=0.9" },
  { city: "Mumbai", country: "IN", region: "Maharashtra", lat: 19.076, lon: 72.8777, tz: "Asia/Kolkata", asn: 55836, org: "Reliance Jio", colo: "BOM", lang: "en-IN,hi;q=0.8" },
  { city: "Singapore", country: "SG", region: "Singapore", lat: 1.3521, lon: 103.8198, tz: "Asia/Singapore", asn: 9506, org: "Singtel", colo: "SIN", lang: "en-SG,en;q=0.9" },
  { city: "Tokyo", country: "JP", region: "Tokyo", lat: 35.6762, lon: 139.6503, tz: "Asia/Tokyo", asn: 2516, org: "KDDI Corporation", colo: "NRT", lang: "ja-JP,ja;q=0.9" },
  { city: "Seoul", country: "KR", region: "Seoul", lat: 37.5665, lon: 126.978, tz: "Asia/Seoul", asn: 4766, org: "Korea Telecom", colo: "ICN", lang: "ko-KR,ko;q=0.9" },
  { city: "Sydney", country: "AU", region: "New South Wales", lat: -33.8688, lon: 151.2093, tz: "Australia/Sydney", asn: 1221, org: "Telstra", colo: "SYD", lang: "en-AU,en;q=0.9" },
];

const BROWSERS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
  "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
];
const PAGES = ["/", "/products", "/products/42", "/products/7", "/cart", "/about", "/blog/edge-security", "/blog/release-notes", "/search?q=shoes", "/account"];
const PROBES = ["/.env", "/.git/config", "/wp-login.php", "/xmlrpc.php", "/phpmyadmin/", "/cgi-bin/../../etc/passwd", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/admin/.env"];
const HOSTING = [
  { asn: 14061, org: "DigitalOcean, LLC", country: "NL", city: "Amsterdam", lat: 52.374, lon: 4.8897, colo: "AMS" },
  { asn: 16276, org: "OVH SAS", country: "FR", city: "Roubaix", lat: 50.6942, lon: 3.1746, colo: "CDG" },
  { asn: 24940, org: "Hetzner Online GmbH", country: "DE", city: "Falkenstein", lat: 50.4779, lon: 12.3713, colo: "FRA" },
];

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
export function cfFor(p) {
  const cf = { clientAcceptEncoding: "", colo: p.colo, httpProtocol: "HTTP/2", tlsVersion: "TLSv1.3" };
  if (p.country) cf.country = p.country;
  if (p.city) cf.city = p.city;
  if (p.region) cf.region = p.region;
  if (p.lat !== undefined) {
    cf.latitude = p.lat.toFixed(5);
    cf.longitude = p.lon.toFixed(5);
  }
  if (p.tz) cf.timezone = p.tz;
  if (p.asn) cf.asn = p.asn;
  if (p.org) cf.asOrganization = p.org;
  if (p.eu) cf.isEUCountry = "1";
  return cf;
}

/** JSON with non-ASCII escaped so it survives as a header value. */
export function asciiJson(v) {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** The visitors: one or two per city, each with a stable documentation IP. */
export function visitors(count = 40) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const place = CITIES[i % CITIES.length];
    const v6 = i % 9 === 4;
    const ip = v6 ? `2001:db8:${(i + 1).toString(16)}:1::${(i % 200) + 10}` : `${["198.51.100", "203.0.113", "192.0.2"][i % 3]}.${10 + i}`;
    out.push({ kind: "visitor", ip, place, ua: BROWSERS[i % BROWSERS.length] });
  }
  return out;
}

/** One request of a persona: { path, method, headers }. */
function requestFor(persona, r) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const browser = (ua, lang) => ({ "User-Agent": ua, Accept: "text/html,application/xhtml+xml", "Accept-Language": lang });
  switch (persona.kind) {
    case "visitor":
      return { path: pick(PAGES), method: r() < 0.05 ? "POST" : "GET", headers: browser(persona.ua, persona.place.lang), cf: cfFor(persona.place) };
    case "tor":
      return { path: pick(PAGES), method: "GET", headers: browser(BROWSERS[2], "en-US,en;q=0.5"), cf: { clientAcceptEncoding: "", country: "T1", colo: "FRA", asn: 60729, httpProtocol: "HTTP/2" } };
    case "scanner":
      return { path: pick(PROBES), method: "GET", headers: { "User-Agent": r() < 0.5 ? "python-requests/2.32.3" : "Mozilla/5.0 zgrab/0.x", Accept: "*/*" }, cf: cfFor(persona.place) };
    case "curl":
      return { path: pick(PAGES), method: "GET", headers: { "User-Agent": "curl/8.5.0", Accept: "*/*" }, cf: cfFor(persona.place) };
    case "stuffer":
      return { path: "/login", method: "POST", headers: { "User-Agent": BROWSERS[0], Accept: "*/*", "Content-Type": "application/x-www-form-urlencoded" }, cf: cfFor(persona.place), body: "user=admin&password=hunter2" };
    case "traveller": {
      // The same session cookie, London and then Sydney minutes apart.
      const place = persona.step++ % 6 < 3 ? CITIES[2] : CITIES[19];
      const ip = place.city === "London" ? "198.51.100.200" : "203.0.113.200";
      return { ip, path: pick(PAGES), method: "GET", headers: { ...browser(BROWSERS[1], place.lang), Cookie: `ei_session=${persona.session}` }, cf: cfFor(place) };
    }
    default:
      return { path: "/", method: "GET", headers: {}, cf: {} };
  }
}

/** All personas with their relative weights (Zipf-like among visitors). */
export function personas(seed = 1) {
  const list = visitors().map((v, i) => ({ persona: v, weight: 1 / (i + 1) }));
  list.push({ persona: { kind: "tor", ip: "192.0.2.66" }, weight: 0.08 });
  HOSTING.forEach((place, i) => list.push({ persona: { kind: "scanner", ip: `203.0.113.${150 + i}`, place }, weight: 0.06 }));
  list.push({ persona: { kind: "curl", ip: "198.51.100.77", place: CITIES[6] }, weight: 0.05 });
  HOSTING.forEach((place, i) => list.push({ persona: { kind: "stuffer", ip: `192.0.2.${180 + i}`, place }, weight: 0.03 }));
  list.push({ persona: { kind: "traveller", session: `s-${seed}-7f3a9c`, step: 0 }, weight: 0.05 });
  return list;
}

/**
 * Sends requests at about `rps` per second until `durationMs` or `signal`.
 * Never throws on a failed request: counts it. Returns { sent, failed, byStatus }.
 */
export async function simulate({ target, rps = 5, durationMs = Infinity, signal, log = console.log, seed = 1 } = {}) {
  const r = rng(seed);
  const all = personas(seed);
  const total = all.reduce((s, p) => s + p.weight, 0);
  const choose = () => {
    let x = r() * total;
    for (const p of all) if ((x -= p.weight) <= 0) return p.persona;
    return all[0].persona;
  };
  const stats = { sent: 0, failed: 0, byStatus: {} };
  const started = Date.now();
  let lastLog = started;
  const inflight = new Set();
  while (!signal?.aborted && Date.now() - started < durationMs) {
    const persona = choose();
    const req = requestFor(persona, r);
    const headers = { ...req.headers, "CF-Connecting-IP": req.ip ?? persona.ip, "MF-CF-Blob": asciiJson(req.cf) };
    const p = fetch(new URL(req.path, target), { method: req.method, headers, body: req.body, redirect: "manual", signal })
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
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      log(`[simulate] sent ${stats.sent}, failed ${stats.failed}, statuses ${JSON.stringify(stats.byStatus)}`);
    }
    await new Promise((res) => setTimeout(res, (1000 / rps) * (0.5 + r())));
  }
  await Promise.allSettled([...inflight]);
  return stats;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const ac = new AbortController();
  process.on("SIGINT", () => ac.abort());
  process.on("SIGTERM", () => ac.abort());
  const stats = await simulate({
    target: opt("target", "http://127.0.0.1:8787"),
    rps: Number(opt("rps", 5)),
    durationMs: opt("duration") ? Number(opt("duration")) * 1000 : Infinity,
    seed: Number(opt("seed", 1)),
    signal: ac.signal,
  });
  console.log(`[simulate] done: ${JSON.stringify(stats)}`);
}
