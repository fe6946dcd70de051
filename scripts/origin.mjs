// Demo and recording origin: stands in for the website behind edgeintel.
// Shows (HTML) or echoes (JSON) the edgeintel headers it received, records
// every request for the tests, and has helper paths: /status/<code>,
// /slow/<ms>, /echo, and /turnstile/siteverify (a stand-in for tests). Any
// path with `?step-up=<value>` answers with `X-Intel-Step-Up: <value>`, as an
// application asking edgeintel to step the client up would (docs/policies.md).
import http from "node:http";
import { pathToFileURL } from "node:url";

const OURS = /^(x-risk-|x-geo-|x-intel|x-threat-score$|x-reputation-score$)/;
const LEVELS = new Set(["low", "medium", "high", "critical", "unknown"]);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Starts the origin. `log(line)`, when given, gets one line per request.
 * Returns { url, port, requests, close }; `requests` gets { method, url, headers, body }.
 */
export async function startOrigin({ port = 0, host = "127.0.0.1", log = null } = {}) {
  const requests = [];
  const sockets = new Set();
  const timers = new Set();
  // Request headers up to 64 KiB (Node's default is 16 KiB): Cloudflare
  // forwards up to 32 KiB of them, and the hostile-input tests send that much.
  const server = http.createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("error", () => {});
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const record = { method: req.method, url: req.url, headers: { ...req.headers }, body };
      requests.push(record);
      if (log) {
        const h = req.headers;
        log(`${req.method} ${req.url} -> score=${h["x-risk-score"] ?? "-"} level=${h["x-risk-level"] ?? "-"} reasons=${h["x-risk-reasons"] || "-"}`);
      }
      // A request line like "//" is not a valid relative URL: keep it as is.
      let path = req.url ?? "/";
      try {
        path = new URL(req.url, "http://origin").pathname;
      } catch {}
      const slow = path.match(/^\/slow\/(\d+)$/);
      if (!slow) return respond(req, res, path, record);
      // Tracked so that close() does not leave the process waiting up to 30 s.
      const t = setTimeout(() => {
        timers.delete(t);
        respond(req, res, path, record);
      }, Math.min(Number(slow[1]), 30000));
      timers.add(t);
    });
  });
  // Node closes an idle keep-alive connection after 5 s by default; the
  // runtime may send the next request on it at that very moment and get
  // "Network connection lost" (a 502 from edgeintel, seen 3 times in 20,000
  // requests on a loaded machine). The server keeps idle connections longer
  // than the runtime does, so the client side always closes first, as a
  // proxy's origin should.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const actual = server.address().port;
  let closing;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${actual}`,
    port: actual,
    requests,
    close: () =>
      (closing ??= new Promise((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}

function respond(req, res, path, record) {
  if (res.destroyed || res.writableEnded) return;
  let stepUp = null;
  try {
    stepUp = new URL(req.url, "http://origin").searchParams.get("step-up");
  } catch {}
  if (stepUp !== null) res.setHeader("x-intel-step-up", stepUp);
  const json = { ok: true, method: req.method, url: req.url, headers: record.headers };
  const status = path.match(/^\/status\/(\d+)$/);
  if (status) {
    const code = Number(status[1]);
    if (code < 200 || code > 599) return send(res, 400, { ok: false, error: "status must be 200..599", url: req.url });
    // Redirects need somewhere to go; 204/304 bodies are dropped by Node itself.
    if (code >= 300 && code < 400) res.setHeader("location", "/");
    return send(res, code, { ...json, ok: code < 400, status: code });
  }
  if (path === "/echo") return send(res, 200, { ...json, body: record.body });
  if (path === "/turnstile/siteverify") {
    // Stands in for Turnstile's siteverify in tests: the response "good" passes,
    // solved on the host named by the "host" parameter of the test's response
    // ("good" alone: edge.test, the test harness's host), like the real one's `hostname`.
    const response = new URLSearchParams(record.body).get("response") ?? "";
    const [verdict, host = "edge.test"] = response.split("@");
    const ok = verdict === "good";
    return send(res, 200, ok ? { success: true, hostname: host, "error-codes": [] } : { success: false, "error-codes": ["invalid-input-response"] });
  }
  if ((req.headers.accept ?? "").includes("text/html")) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    return res.end(page(req, record.headers));
  }
  send(res, 200, json);
}

function send(res, code, value) {
  res.writeHead(code, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(value));
}

function page(req, headers) {
  const rows = Object.entries(headers)
    .filter(([k]) => OURS.test(k))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join("\n");
  const level = headers["x-risk-level"] ?? "none";
  const cls = LEVELS.has(level) ? level : "none";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo origin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;padding:0 1rem;max-width:60rem;color:#1b1f24;background:#fafafa}
h1{margin-bottom:.2rem}code{font-family:ui-monospace,monospace;background:#eef0f3;padding:.05rem .3rem;border-radius:.25rem;word-break:break-all}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;vertical-align:top;padding:.35rem .6rem;border-bottom:1px solid #e3e5e8;font-family:ui-monospace,monospace;font-size:14px}
th{white-space:nowrap;color:#4b5563;font-weight:600}td{word-break:break-all}
.level{display:inline-block;padding:.05rem .7rem;border-radius:1rem;color:#fff;background:#6b7280;font-weight:600}
.low{background:#15803d}.medium{background:#b45309}.high{background:#c2410c}.critical{background:#b91c1c}.unknown{background:#4b5563}
</style></head>
<body><h1>Demo origin</h1>
<p><code>${esc(req.method)} ${esc(req.url)}</code> arrived with risk level <span class="level ${cls}">${esc(level)}</span></p>
<h2>Headers edgeintel added</h2>
<table>
${rows || "<tr><td>none: this request did not come through edgeintel</td></tr>"}
</table></body></html>`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
  };
  const quiet = args.includes("--quiet");
  try {
    const o = await startOrigin({ port: Number(opt("port", 8788)), host: opt("host", "127.0.0.1"), log: quiet ? null : console.log });
    console.log(`demo origin listening on ${o.url}`);
    const stop = () => o.close().then(() => process.exit(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  } catch (e) {
    console.error(`demo origin: ${e.code === "EADDRINUSE" ? `port ${opt("port", 8788)} is in use` : e.message}`);
    process.exit(1);
  }
}
