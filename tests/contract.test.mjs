// Contract test (issue #9): the OpenAPI 3.1 document the Worker serves at
// /_intel/api/openapi.json (src/openapi.json, compiled into the wasm) must
// be true of the API. schemathesis (pinned in tests/contract/requirements.txt,
// installed into .venv by scripts/setup-python.sh) loads the document from
// the running Worker (Miniflare, tests/harness.mjs), authenticated with the
// admin token, and runs every phase with every check against it: responses
// must match their documented status codes, content types and schemas,
// schema-valid requests must be accepted and schema-violating ones rejected,
// undeclared methods must get 405 with `Allow`, no 5xx, requests without a
// valid token must get 401, a deleted subject must be gone. Bounded and
// seeded, so a run is repeatable and takes well under a minute.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEdge, ADMIN_TOKEN } from "./harness.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SCHEMATHESIS = join(ROOT, ".venv", "bin", "schemathesis");
const ARTIFACTS = join(ROOT, "tests", "artifacts");
const COUNTS = join(ARTIFACTS, "counts", "contract.json");
const JUNIT = join(ARTIFACTS, "contract", "junit.xml");

// Test cases per operation and phase, and the seed: enough to reach every
// status an operation documents, few enough for well under a minute on 2 cores.
const MAX_EXAMPLES = 100;
const SEED = 9006;
const RUN_TIMEOUT_MS = 5 * 60_000;

// Not run here: the WebSocket streams. Over plain HTTP they only answer 426
// (or 401/405); the upgrade, the ticket and bearer-subprotocol auth and the
// messages are covered by tests/streams.test.mjs.
const EXCLUDED_PATHS = ["/api/intelligence/stream", "/api/performance/stream"];

// Operations per auth pass (below): fewer wrong tokens from one client than
// the limiter allows in a minute (intel::auth_guard, 10), so every probe
// gets its 401 rather than the lockout's 429.
const AUTH_BATCH = 8;

// schemathesis.toml, written for the main run. Every check is on (named
// here, not with `--checks all`: a check named on the command line would
// override the per-operation setting below) but ignored_auth, which gets a
// pass of its own: it sends one wrong token per operation, and from one
// client the 11th within a minute locks that client out, so every later
// request of the run, with the right token too, would get 429 and test
// nothing (schemathesis accepts 429 as an answer to valid data).
const CONFIG = `
[checks]
enabled = true

[checks.ignored_auth]
enabled = false

# POST /api/events validates each event of a batch on its own: a batch with
# invalid events is answered 202 with those events listed in \`rejected\`
# (and the valid ones stored), as documented on the Event schema. So
# "a schema-violating body gets a 4xx" does not hold there by design; the
# whole-body rejections (not JSON, not an array, too many events, over 1 MiB,
# not application/json) and the per-item ones are asserted by
# tests/reliability.test.mjs. Every other check stays on for it.
[[operations]]
include-path = "/api/events"
include-method = "POST"
checks.negative_data_rejection.enabled = false

# PUT /api/config/rules refuses two rules with one id (rule ids name the hit
# counters and the origin's rule="..." member), which JSON Schema cannot
# say: a schema-valid body may be answered 400 invalid_rules there. The
# acceptance of valid rules and the naming of every bad field are asserted
# by tests/policies.test.mjs and the parser's native tests.
[[operations]]
include-name = "PUT /api/config/rules"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "429", "5xx"]

# POST /api/policy/preview reads its rules with the same parser, so the same
# holds there (two candidate rules with one id: 400 invalid_policy); its
# answers are asserted by tests/preview.test.mjs.
[[operations]]
include-name = "POST /api/policy/preview"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "429", "5xx"]
`;

let edge;
let tmp;
before(async () => {
  // CHALLENGE_SIGNING_KEY turns on /challenge/verify (ENFORCE stays off).
  edge = await startEdge({ vars: { FLUSH_INTERVAL_MS: "200", CHALLENGE_SIGNING_KEY: "contract-test-challenge-key-0123456789" } });
  tmp = mkdtempSync(join(tmpdir(), "contract-"));
});
after(async () => {
  await edge?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Runs a command; resolves with its exit code and output (never rejects on a non-zero exit). */
function run(cmd, args, { timeoutMs, env }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: tmp, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

test("the served OpenAPI document holds for the running API (schemathesis, all checks)", async () => {
  assert.ok(
    existsSync(SCHEMATHESIS),
    `${SCHEMATHESIS} is missing: run scripts/setup-python.sh (creates .venv with the pinned schemathesis)`,
  );
  // A subject with a profile, so the documented example IP has one (200, not only 404).
  const seeded = await edge.api("POST", "/api/events", {
    body: [{ ip: "198.51.100.7", eventType: "threat_detected", data: { threatScore: 60 } }],
  });
  assert.equal(seeded.status, 202, seeded.text);
  assert.equal(seeded.json.accepted, 1, seeded.text);

  const base = new URL("_intel", edge.url).href;
  const doc = await edge.api("GET", "/api/openapi.json");
  assert.equal(doc.status, 200);
  const methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
  const documented = Object.entries(doc.json.paths).flatMap(([path, item]) =>
    Object.keys(item).filter((m) => methods.includes(m)).map((m) => `${m.toUpperCase()} ${path}`),
  );
  const expected = documented.filter((op) => !EXCLUDED_PATHS.includes(op.split(" ")[1]));
  assert.equal(documented.length - expected.length, EXCLUDED_PATHS.length, "each excluded path is one documented operation");

  // The document as served, given to schemathesis as a file: loaded from its
  // URL, schemathesis leaves out the operation that serves it.
  const served = join(tmp, "openapi.json");
  writeFileSync(served, doc.text);
  const config = join(tmp, "schemathesis.toml");
  writeFileSync(config, CONFIG);
  mkdirSync(join(ARTIFACTS, "contract"), { recursive: true });
  const common = [
    "--url", base,
    "-H", `Authorization: Bearer ${ADMIN_TOKEN}`,
    // Repeatable: no example database carried between runs, one worker.
    "--seed", String(SEED),
    "--generation-database", "none",
    "--workers", "1",
    "--continue-on-failure",
    "--request-timeout", "10",
    ...EXCLUDED_PATHS.flatMap((p) => ["--exclude-path", p]),
    "--no-color",
  ];
  const args = [
    "--config-file", config,
    "run", served, ...common,
    "--phases", "examples,coverage,fuzzing,stateful",
    "--max-examples", String(MAX_EXAMPLES),
    "--report", "junit",
    "--report-junit-path", JUNIT,
  ];
  const started = Date.now();
  const env = { ...process.env, NO_COLOR: "1", PYTHONDONTWRITEBYTECODE: "1" };
  const { code, signal, out } = await run(SCHEMATHESIS, args, { timeoutMs: RUN_TIMEOUT_MS, env });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);

  // The summary of schemathesis 4 (the pinned version):
  //   API Operations: / Selected: 20/22 / Tested: 20
  //   Test cases: / 2259 generated, 2259 passed  (or: ..., N found M unique failures, ...)
  const tested = Number(out.match(/^\s*Tested:\s*(\d+)/m)?.[1]);
  const cases = Number(out.match(/^\s*(\d+) generated\b/m)?.[1]);
  const failures = Number(out.match(/\b(\d+) found \d+ unique failures?\b/m)?.[1] ?? 0);
  const counts = { operations: tested, cases, failures, seconds: Number(seconds) };
  mkdirSync(join(ARTIFACTS, "counts"), { recursive: true });
  writeFileSync(COUNTS, JSON.stringify({ suite: "contract", ...counts }, null, 2) + "\n");
  console.log(`contract: ${tested} operations, ${cases} test cases, ${failures} failures in ${seconds} s (seed ${SEED}, JUnit: ${JUNIT})`);

  const tail = out.split("\n").slice(-400).join("\n");
  assert.equal(signal, null, `schemathesis was killed (${signal}) after ${seconds} s:\n${tail}`);
  assert.equal(code, 0, `schemathesis found mismatches (exit ${code}):\n${tail}`);
  assert.ok(Number.isInteger(tested) && Number.isInteger(cases), `could not read the counts from:\n${tail}`);
  assert.equal(tested, expected.length, `every documented operation but the streams is tested (${expected.join(", ")})`);
  assert.ok(cases >= expected.length * 10, `${cases} test cases for ${tested} operations is too few`);
  // A run whose requests mostly got 429 tested nothing behind the limiter.
  assert.doesNotMatch(out, /Rate limited:/, `requests were answered 429, so the run tested little:\n${tail}`);

  // ignored_auth, a few operations at a time, each batch as another client
  // (CF-Connecting-IP), so no batch reaches the limiter.
  for (let i = 0; i * AUTH_BATCH < expected.length; i++) {
    const batch = expected.slice(i * AUTH_BATCH, (i + 1) * AUTH_BATCH);
    const authArgs = [
      "run", served, ...common,
      "-H", `CF-Connecting-IP: 203.0.113.${10 + i}`,
      "--checks", "ignored_auth",
      "--phases", "examples,coverage",
      "--max-examples", "5",
      ...batch.flatMap((op) => ["--include-name", op]),
    ];
    const pass = await run(SCHEMATHESIS, authArgs, { timeoutMs: RUN_TIMEOUT_MS, env });
    const passTail = pass.out.split("\n").slice(-120).join("\n");
    assert.equal(pass.code, 0, `ignored_auth pass ${i + 1} (${batch.join(", ")}) failed:\n${passTail}`);
    assert.equal(Number(pass.out.match(/^\s*Tested:\s*(\d+)/m)?.[1]), batch.length, `pass ${i + 1} tested every operation:\n${passTail}`);
    assert.doesNotMatch(pass.out, /Rate limited:/, `ignored_auth pass ${i + 1} met the lockout:\n${passTail}`);
  }
});
