// The open-loop load generator of the bench, in its own process (forked by
// scripts/bench.mjs and scripts/bench-scale.mjs), so that the measuring side
// does not share an event loop with anything else the bench does.
//
// Open loop: request k is due at t0 + k / rate whatever happened before, and
// its latency is measured from that *scheduled* time, so a stall of the
// system under test (or of this process) counts against every request that
// should have been sent during it (no coordinated omission).
//
// Protocol (IPC): the parent sends {id, targets, reqs, rate}; `targets` is a
// list of {base, headers}: request k goes to targets[k % targets.length]
// (round robin over K workers). Each request is {ip, path, headers, cf}. The
// answer is {id, lat, status, sendLag, statuses, errors, firstError,
// seconds, achievedRps}.
import { fork } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { asciiJson } from "./simulate.mjs";

/**
 * For the parent: forks the generator; `run(targets, reqs, rate)` resolves
 * with its answer; `close()` ends the process.
 */
export function startLoader() {
  const child = fork(fileURLToPath(import.meta.url), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiting = new Map();
  let next = 0;
  child.on("message", (m) => {
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  return {
    run(targets, reqs, rate) {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        child.send({ id, targets, reqs, rate });
      });
    },
    close() {
      child.send("exit");
    },
  };
}

function send(target, q) {
  const headers = { ...target.headers, ...q.headers, "CF-Connecting-IP": q.ip, "MF-CF-Blob": asciiJson(q.cf) };
  return fetch(target.base + q.path, { headers }).then(async (res) => {
    await res.arrayBuffer();
    return res.status;
  });
}

async function run({ targets, reqs, rate }) {
  const lat = new Array(reqs.length);
  // Per request: its status, 0 when no answer came (a network error).
  const status = new Array(reqs.length).fill(0);
  const sendLag = [];
  const statuses = {};
  let errors = 0;
  let firstError = null;
  const t0 = performance.now() + 20;
  const pending = [];
  for (let k = 0; k < reqs.length; k++) {
    const due = t0 + (k * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((res) => setTimeout(res, wait));
    // How late this process itself sent it (its own stall, kept apart).
    sendLag.push(Math.max(0, performance.now() - due));
    pending.push(
      send(targets[k % targets.length], reqs[k]).then(
        (st) => {
          lat[k] = performance.now() - due;
          status[k] = st;
          statuses[st] = (statuses[st] ?? 0) + 1;
          if (st >= 500) errors++;
        },
        (e) => {
          lat[k] = performance.now() - due;
          firstError ??= String(e?.cause?.message ?? e?.message ?? e);
          errors++;
        },
      ),
    );
  }
  await Promise.all(pending);
  const seconds = (performance.now() - t0) / 1000;
  return { lat, status, sendLag, statuses, errors, firstError, seconds, achievedRps: reqs.length / seconds };
}

// Only as the forked child (the parent imports `startLoader` from here).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.on("message", async (msg) => {
    if (msg === "exit") process.exit(0);
    const out = await run(msg);
    process.send({ id: msg.id, ...out });
  });
}
