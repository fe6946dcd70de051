// `npm start` (after set-up and build): the demo origin, edgeintel under
// `wrangler dev` in front of it, and the traffic simulator feeding it
// geo-varied requests. Prints the URLs; Ctrl-C stops everything it started.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { startOrigin } from "./origin.mjs";
import { simulate } from "./simulate.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = "127.0.0.1";
const workerPort = Number(process.env.WORKER_PORT ?? opt("port", 8787));
const rps = Number(opt("rps", 5));

async function freePort(preferred) {
  const tryListen = (port) =>
    new Promise((resolve) => {
      const srv = net.createServer();
      srv.once("error", () => resolve(null));
      srv.listen(port, host, () => srv.close(() => resolve(port)));
    });
  return (await tryListen(preferred)) ?? (await tryListen(0).then(() => null)) ?? 0;
}

// The admin token lives in .dev.vars (wrangler's local secrets file, never
// committed): reuse it, or create a random one on first start.
function adminToken() {
  const file = ".dev.vars";
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const found = text.match(/^ADMIN_TOKEN\s*=\s*"?([^"\n]+)"?/m);
  if (found) return found[1];
  const token = randomBytes(18).toString("hex");
  writeFileSync(file, `${text}${text && !text.endsWith("\n") ? "\n" : ""}ADMIN_TOKEN="${token}"\n`, { mode: 0o600 });
  return token;
}

const token = adminToken();
const origin = await startOrigin({ port: (await freePort(Number(process.env.ORIGIN_PORT ?? 8788))) || 0, host, log: null });
console.log(`demo origin listening on ${origin.url}`);

const wrangler = spawn(
  "node_modules/.bin/wrangler",
  [
    "dev",
    "--ip", host,
    "--port", String(workerPort),
    "--var", `ORIGIN_URL:${origin.url}`,
    "--var", "VISITOR_COOKIE:ei_session",
    "--show-interactive-dev-session=false",
  ],
  { env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" }, detached: true, stdio: ["ignore", "pipe", "pipe"] },
);
const prefix = (stream) => {
  let buf = "";
  stream.on("data", (chunk) => {
    buf += chunk;
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const l of lines) if (l.trim()) console.log(`[wrangler] ${l}`);
  });
};
prefix(wrangler.stdout);
prefix(wrangler.stderr);

let stopping = false;
const sim = new AbortController();
async function stop(code) {
  if (stopping) return;
  stopping = true;
  sim.abort();
  try {
    process.kill(-wrangler.pid, "SIGTERM");
  } catch {}
  const killer = setTimeout(() => {
    try {
      process.kill(-wrangler.pid, "SIGKILL");
    } catch {}
  }, 5000);
  await new Promise((r) => (wrangler.exitCode !== null ? r() : wrangler.once("exit", r)));
  clearTimeout(killer);
  await origin.close();
  process.exit(code);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));
wrangler.once("exit", (code) => {
  if (!stopping) {
    console.error(`wrangler exited (${code}); stopping`);
    stop(1);
  }
});

const base = `http://${host}:${workerPort}`;
let ready = false;
for (let i = 0; i < 240 && !stopping; i++) {
  try {
    const r = await fetch(`${base}/_intel/health/intelligence`);
    await r.arrayBuffer();
    if (r.status === 200) {
      ready = true;
      break;
    }
  } catch {}
  await new Promise((r) => setTimeout(r, 250));
}
if (!ready) {
  console.error("edgeintel did not answer /_intel/health/intelligence within 60 s");
  await stop(1);
}

console.log(`
  edgeintel is running (wrangler dev, local runtime)
  site through edgeintel  ${base}/
  dashboard               ${base}/_intel/        admin token: ${token}  (local only, from .dev.vars)
  liveness                ${base}/_intel/health/intelligence
  demo origin (direct)    ${origin.url}/
  traffic                 ${args.includes("--no-simulate") ? "off (--no-simulate)" : `simulator, about ${rps} requests/s`}
  stop                    Ctrl-C
`);
if (!args.includes("--no-simulate")) {
  simulate({ target: base, rps, signal: sim.signal }).catch((e) => console.error(`[simulate] ${e.message}`));
}
