// Demo and recording origin: stands in for the website behind edgeintel.
// Shows (HTML) or echoes (JSON) the edgeintel headers it received, records
// every request for the tests, and has helper paths: /status/<code>,
// /slow/<ms>, /echo.
import http from "node:http";
import { pathToFileURL } from "node:url";

const OURS = /^(x-risk-|x-geo-|x-intel|x-threat-score$|x-reputation-score$)/;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startOrigin({ port = 0, host = "127.0.0.1", log = null } = {}) {
  const requests = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
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
      const status = path.match(/^\/status\/(\d{3})$/);
      const slow = path.match(/^\/slow\/(\d+)$/);
      if (slow) await new Promise((r) => setTimeout(r, Math.min(Number(slow[1]), 30000)));
      const code = status ? Number(status[1]) : 200;
      const json = { ok: true, method: req.method, url: req.url, headers: record.headers };
      if (path === "/echo") json.body = body;
      const wantsHtml = (req.headers.accept ?? "").includes("text/html") && path !== "/echo";
      if (code >= 300 && code < 400) res.setHeader("location", "/");
      if (wantsHtml && !status) {
        res.writeHead(code, { "content-type": "text/html; charset=utf-8" });
        res.end(page(req, record.headers));
      } else {
        res.writeHead(code >= 200 && code <= 599 ? code : 200, { "content-type": "application/json" });
        res.end(JSON.stringify(json));
      }
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  return {
    url: `http://${host}:${actual}`,
    port: actual,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function page(req, headers) {
  const rows = Object.entries(headers)
    .filter(([k]) => OURS.test(k))
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join("");
  const level = esc(headers["x-risk-level"] ?? "none");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo origin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:60rem;color:#1b1f24}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;font-family:ui-monospace,monospace}
.level{display:inline-block;padding:.1rem .6rem;border-radius:1rem;color:#fff;background:#6b7280}
.low{background:#15803d}.medium{background:#b45309}.high{background:#c2410c}.critical{background:#b91c1c}</style></head>
<body><h1>Demo origin</h1><p>${esc(req.method)} <code>${esc(req.url)}</code> arrived through edgeintel with risk level
<span class="level ${level}">${level}</span>.</p><h2>Headers edgeintel added</h2>
<table>${rows || "<tr><td>none: this request did not come through edgeintel</td></tr>"}</table></body></html>`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const quiet = args.includes("--quiet");
  const o = await startOrigin({ port: Number(opt("port", 8788)), host: opt("host", "127.0.0.1"), log: quiet ? null : console.log });
  console.log(`demo origin listening on ${o.url}`);
}
