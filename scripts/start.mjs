// `npm start` (after set-up and build): the demo origin, edgeintel under
// `wrangler dev` in front of it, and the traffic simulator feeding it
// geo-varied requests. Prints the URLs; Ctrl-C stops everything it started.
// It never builds: `npm start` runs the build before it.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startOrigin } from "./origin.mjs";
import { simulate } from "./simulate.mjs";
import { newAgentKey, publicJwk, startKeyDirectory } from "./web-bot-auth.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const host = "127.0.0.1";
const workerPort = Number(process.env.WORKER_PORT ?? opt("port", 8787));
const rps = Number(opt("rps", 5));
const simulateOn = !args.includes("--no-simulate");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(message) {
  console.error(`edgeintel: ${message}`);
  process.exit(1);
}

const wranglerBin = path.join(root, "node_modules/.bin/wrangler");
if (!existsSync(path.join(root, "build/index.js"))) fail("build/index.js is missing: run `npm run build` (or `npm start`, which builds first)");
if (!existsSync(wranglerBin)) fail("node_modules/.bin/wrangler is missing: run `npm install`");
if (!(rps > 0)) fail("--rps must be a positive number");

// Checked up front: otherwise a stale server on the port would answer the
// health check and we would report a worker that is not ours.
const portFree = (port) =>
  new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
if (!(await portFree(workerPort))) fail(`port ${workerPort} is in use (another edgeintel?): stop it or set WORKER_PORT`);

// The admin token lives in .dev.vars (wrangler's local secrets file, never
// committed): reuse it, or create a random one on first start.
function adminToken() {
  const file = path.join(root, ".dev.vars");
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const found = text.match(/^ADMIN_TOKEN\s*=\s*"?([^"\n]+)"?/m);
  if (found) return found[1];
  const token = randomBytes(18).toString("hex");
  writeFileSync(file, `${text}${text && !text.endsWith("\n") ? "\n" : ""}ADMIN_TOKEN="${token}"\n`, { mode: 0o600 });
  return token;
}
const token = adminToken();

const originPort = Number(process.env.ORIGIN_PORT ?? 8788);
let origin;
try {
  origin = await startOrigin({ port: originPort, host });
} catch (e) {
  if (e.code !== "EADDRINUSE") throw e;
  origin = await startOrigin({ port: 0, host });
  console.log(`port ${originPort} is in use: demo origin on ${origin.port} instead`);
}
console.log(`demo origin listening on ${origin.url}`);
// The simulator's signed agent publishes its key on an origin of its own
// (Web Bot Auth). A loopback origin is verified only when SIGNED_AGENTS
// lists it (never under the default `any`), so under npm start SIGNED_AGENTS
// is that origin alone (overriding .dev.vars; other agents are not verified
// here), and SIGNED_AGENTS_TRUSTED trusts it: with ENFORCE on, it is not
// challenged on score.
const agentKey = newAgentKey();
const agentDirectory = await startKeyDirectory([publicJwk(agentKey)], { host });

// Own process group, so that stopping reaches workerd (wrangler's child) too.
// node_modules/.bin first on PATH: wrangler's `#!/usr/bin/env node` must find
// the Node 22 from package.json even when this script runs under another Node.
const wrangler = spawn(
  wranglerBin,
  [
    "dev",
    "--ip", host,
    "--port", String(workerPort),
    "--var", `ORIGIN_URL:${origin.url}`,
    "--var", "VISITOR_COOKIE:ei_session",
    "--var", `SIGNED_AGENTS:${JSON.stringify([agentDirectory.origin])}`,
    "--var", `SIGNED_AGENTS_TRUSTED:${JSON.stringify([agentDirectory.origin])}`,
    "--show-interactive-dev-session=false",
  ],
  {
    cwd: root,
    env: {
      ...process.env,
      PATH: `${path.join(root, "node_modules/.bin")}${path.delimiter}${process.env.PATH ?? ""}`,
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_SEND_METRICS: "false",
    },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  },
);
const prefix = (stream) => {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buf += chunk;
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const l of lines) if (l.trim()) console.log(`[wrangler] ${l}`);
  });
  stream.on("end", () => buf.trim() && console.log(`[wrangler] ${buf}`));
};
prefix(wrangler.stdout);
prefix(wrangler.stderr);

const groupAlive = () => {
  try {
    process.kill(-wrangler.pid, 0);
    return true;
  } catch {
    return false;
  }
};
const killGroup = (sig) => {
  try {
    process.kill(-wrangler.pid, sig);
  } catch {}
};
// Last resort if this process dies some other way: never leave workerd behind.
process.on("exit", () => killGroup("SIGKILL"));

let stopping = false;
const sim = new AbortController();
async function stop(code) {
  if (stopping) return;
  stopping = true;
  sim.abort();
  // The whole group, even if wrangler itself is gone: workerd may outlive it.
  killGroup("SIGTERM");
  for (let waited = 0; groupAlive() && waited < 5000; waited += 100) await sleep(100);
  if (groupAlive()) {
    console.error("wrangler did not stop within 5 s: SIGKILL");
    killGroup("SIGKILL");
  }
  await origin.close();
  await agentDirectory.close();
  process.exit(code);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));
process.on("SIGHUP", () => stop(0));
wrangler.once("error", (e) => {
  console.error(`could not start wrangler: ${e.message}`);
  stop(1);
});
wrangler.once("exit", (code, signal) => {
  if (!stopping) {
    console.error(`wrangler exited by itself (${signal ?? `code ${code}`}); stopping`);
    stop(1);
  }
});

const base = `http://${host}:${workerPort}`;
const status = async (url) => {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: "manual" });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
};
let ready = false;
for (const deadline = Date.now() + 60_000; !stopping && Date.now() < deadline; await sleep(250)) {
  if ((await status(`${base}/_intel/health/intelligence`)) === 200) {
    ready = true;
    break;
  }
}
if (stopping) await new Promise(() => {}); // stop() is already exiting
if (!ready) {
  console.error(`edgeintel did not answer 200 on ${base}/_intel/health/intelligence within 60 s`);
  await stop(1);
}

const dashboard =
  (await status(`${base}/_intel/`)) === 200
    ? `${base}/_intel/        admin token: ${token}  (local only, from .dev.vars)`
    : `${base}/_intel/        (coming with the dashboard issue)`;
console.log(`
  edgeintel is running (wrangler dev, local runtime)
  site through edgeintel  ${base}/
  dashboard               ${dashboard}
  liveness                ${base}/_intel/health/intelligence
  demo origin (direct)    ${origin.url}/
  signed agent's keys     ${agentDirectory.origin}/.well-known/http-message-signatures-directory
  traffic                 ${simulateOn ? `simulator, about ${rps} requests/s` : "off (--no-simulate)"}
  stop                    Ctrl-C
`);
if (simulateOn) {
  simulate({ target: base, rps, signal: sim.signal, agent: { key: agentKey, origin: agentDirectory.origin } }).catch((e) => console.error(`[simulate] ${e.message}`));
}
