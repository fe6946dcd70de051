// Alert webhooks (issue 18): the real Worker in the local runtime POSTs each
// alert rule transition (firing, resolved) from the hub's alarm to a real
// local HTTP receiver started here. The receiver fails the first attempts
// (a 500 twice for the signed JSON target, a dropped connection once for the
// Slack-format one) and then accepts; it verifies the HMAC over "t.body"
// with node:crypto and checks both bodies. Then the deliveries API: status
// and attempts, no URL path and no secret. A second test stops the runtime
// while a delivery waits for its retry and starts it again on the same
// storage: the retry comes from the stored outbox.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEdge, BROWSER_HEADERS, eventually as poll } from "./harness.mjs";
import { startOrigin } from "../scripts/origin.mjs";

const SECRET = "whsec-test-0123456789abcdef";
// The Slack-format target's path stands for a Slack URL's secret part: it
// must never come back from the API.
const SLACK_PATH = "/services/T000/B000/SLACKPATHSECRET";
const RULES = JSON.stringify([
  { name: "busy_site", metric: "request_count", operator: ">=", threshold: 5, duration: 0, severity: "high", message: "5 or more requests in a slide", cooldown: 0 },
]);
const VARS = {
  RISK_MODE: "consistent",
  ANALYTICS_SLIDE_SECONDS: "1",
  ANALYTICS_WINDOW_SECONDS: "20",
  FLUSH_INTERVAL_MS: "100",
  ALERT_RULES: RULES,
  ALERT_WEBHOOK_SECRET_TEST: SECRET,
};
const eventually = (check, opts) => poll(check, { tries: 300, everyMs: 100, ...opts });

/**
 * A webhook receiver. `plan(path, id, attempt)` says what to do with an
 * attempt: "ok" (200), a status number, or "drop" (close the connection
 * without an answer). Every request is recorded with its raw body.
 */
async function startReceiver(plan) {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const id = req.headers["x-intel-webhook-id"];
      const attempt = got.filter((g) => g.path === req.url && g.id === id).length + 1;
      const action = plan(req.url, id, attempt);
      got.push({ path: req.url, id, attempt, headers: req.headers, body, at: Date.now(), action });
      if (action === "drop") return req.socket.destroy();
      res.writeHead(action === "ok" ? 200 : action, { "content-type": "text/plain" });
      res.end(action === "ok" ? "ok" : "no");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, got, close: () => new Promise((r) => server.close(r)) };
}

/** Checks `X-Intel-Webhook-Signature: t=<unix>,v1=<hex>` over "t.body", as a receiver would. */
function verify(headers, body, secret) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(headers["x-intel-webhook-signature"] ?? "");
  if (!m) return false;
  const [, t, sig] = m;
  if (Math.abs(Date.now() / 1000 - Number(t)) > 300) return false;
  const want = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(want, Buffer.from(sig, "hex"));
}

async function burst(edge) {
  // 10 requests well within a second: one 1-second slide holds at least 5.
  await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const res = await edge.send("/products", { cf: { country: "DE", asn: 3320 }, ip: `192.0.2.${100 + i}`, headers: BROWSER_HEADERS });
      await res.arrayBuffer();
    }),
  );
}

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test("each transition is POSTed signed (json) and as Slack text, retried with backoff after failures, and listed without secrets", async () => {
  const receiver = await startReceiver((path, id, attempt) => {
    if (path === "/hooks/json") return attempt <= 2 ? 500 : "ok";
    if (path === SLACK_PATH) return attempt === 1 ? "drop" : "ok";
    return 404;
  });
  cleanups.push(receiver.close);
  const hooks = [
    { url: `${receiver.url}/hooks/json`, format: "json", secretVar: "ALERT_WEBHOOK_SECRET_TEST" },
    { url: `${receiver.url}${SLACK_PATH}`, format: "slack" },
  ];
  const edge = await startEdge({ vars: { ...VARS, ALERT_WEBHOOKS: JSON.stringify(hooks) } });
  cleanups.push(() => edge.close());
  const sentAt = Date.now();
  await burst(edge);

  const accepted = (path, state) =>
    receiver.got.find((g) => g.path === path && g.action === "ok" && JSON.parse(g.body).alert?.state === state);
  const slackAccepted = (word) => receiver.got.find((g) => g.path === SLACK_PATH && g.action === "ok" && JSON.parse(g.body).text?.includes(`[${word}] busy_site`));
  // Fires once the slide with the burst is judged (~2 s), then 2 retries (1 and 2 slides later).
  assert.ok(await eventually(() => accepted("/hooks/json", "firing")), "the firing alert reached the json receiver");
  assert.ok(await eventually(() => accepted("/hooks/json", "resolved")), "the resolved alert reached the json receiver");
  assert.ok(await eventually(() => slackAccepted("FIRING") && slackAccepted("RESOLVED")), "both reached the slack receiver");

  // The JSON target: every attempt signed over "t.body" with the secret
  // from ALERT_WEBHOOK_SECRET_TEST; the body is the contract's alert.
  const json = receiver.got.filter((g) => g.path === "/hooks/json");
  for (const g of json) {
    assert.ok(verify(g.headers, g.body, SECRET), `signature of attempt ${g.attempt}: ${g.headers["x-intel-webhook-signature"]}`);
    assert.ok(!verify(g.headers, g.body, "another-secret-0123456789"), "a wrong secret does not verify");
    assert.ok(!verify(g.headers, g.body + " ", SECRET), "a changed body does not verify");
    assert.equal(g.headers["content-type"], "application/json");
    assert.equal(g.headers["x-intel-webhook-attempt"], String(g.attempt));
  }
  const firing = json.filter((g) => g.id === accepted("/hooks/json", "firing").id);
  assert.deepEqual(firing.map((g) => [g.attempt, g.action]), [[1, 500], [2, 500], [3, "ok"]], "failed twice, then accepted");
  assert.equal(new Set(firing.map((g) => g.body)).size, 1, "the same body on every attempt");
  // Backoff: the 2nd attempt at a later tick (>= 1 slide), the 3rd >= 2 slides after it (less half a slide).
  const [a1, a2, a3] = firing.map((g) => g.at);
  assert.ok(a2 - a1 >= 500, `2nd attempt ${a2 - a1} ms after the 1st`);
  assert.ok(a3 - a2 >= 1400, `3rd attempt ${a3 - a2} ms after the 2nd`);
  const alert = JSON.parse(firing[2].body);
  assert.deepEqual(Object.keys(alert), ["alert"]);
  for (const k of ["rule", "state", "severity", "message", "value", "threshold", "at"]) assert.ok(k in alert.alert, `alert.${k}`);
  assert.equal(alert.alert.rule, "busy_site");
  assert.equal(alert.alert.state, "firing");
  assert.equal(alert.alert.severity, "high");
  assert.equal(alert.alert.message, "5 or more requests in a slide");
  assert.equal(alert.alert.threshold, 5);
  assert.ok(alert.alert.value >= 5, `value ${alert.alert.value}`);
  assert.ok(Date.parse(alert.alert.at) >= sentAt - 1000, `at ${alert.alert.at}`);
  const resolved = JSON.parse(accepted("/hooks/json", "resolved").body).alert;
  assert.equal(resolved.state, "resolved");
  assert.ok(resolved.value < 5);

  // The Slack target: {"text"} only, unsigned (no secret), retried after a dropped connection.
  const slack = receiver.got.filter((g) => g.path === SLACK_PATH);
  const slackFiring = slack.filter((g) => g.id === slackAccepted("FIRING").id);
  assert.deepEqual(slackFiring.map((g) => [g.attempt, g.action]), [[1, "drop"], [2, "ok"]]);
  const text = JSON.parse(slackFiring[1].body);
  assert.deepEqual(Object.keys(text), ["text"]);
  assert.match(text.text, /^:rotating_light: \[FIRING\] busy_site \(high\): 5 or more requests in a slide \(request_count = \d+, threshold &gt;= 5\) at \d{4}-\d\d-\d\dT/);
  assert.ok(slack.every((g) => !("x-intel-webhook-signature" in g.headers)));

  // The deliveries API: admin only, outcomes with status and attempts, no URL path, no secret.
  const unauth = await edge.api("GET", "/api/alerts/webhooks", { token: null });
  assert.equal(unauth.status, 401);
  const view = await eventually(async () => {
    const r = await edge.api("GET", "/api/alerts/webhooks");
    return r.json?.delivered >= 4 ? r : null;
  });
  assert.equal(view.status, 200);
  for (const hidden of [SLACK_PATH, "SLACKPATHSECRET", "/hooks/json", SECRET]) assert.ok(!view.text.includes(hidden), `${hidden} in ${view.text}`);
  assert.deepEqual(view.json.targets, [
    { target: 0, endpoint: `${receiver.url}/…`, format: "json", signed: true },
    { target: 1, endpoint: `${receiver.url}/…`, format: "slack", signed: false },
  ]);
  const done = view.json.deliveries.find((d) => d.target === 0 && d.state === "firing");
  assert.equal(done.outcome, "delivered");
  assert.equal(done.attempts, 3);
  assert.equal(done.status, 200);
  assert.equal(done.rule, "busy_site");
  assert.equal(done.id, firing[0].id);
  const slackDone = view.json.deliveries.find((d) => d.target === 1 && d.state === "firing");
  assert.deepEqual([slackDone.outcome, slackDone.attempts, slackDone.status], ["delivered", 2, 200]);
  assert.equal(view.json.failed, 0);
  assert.ok(!edge.runtimeLog.join("").includes("panicked"), "no panic");
  assert.ok(!edge.runtimeLog.join("").includes("SLACKPATHSECRET"), "the log has no Slack URL path");
});

test("a delivery waiting for its retry survives a restart of the runtime (the outbox is stored)", async () => {
  let accepting = false;
  const receiver = await startReceiver((path) => (path === "/hooks/json" && accepting ? "ok" : 503));
  cleanups.push(receiver.close);
  const dir = mkdtempSync(join(tmpdir(), "edgeintel-webhooks-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const origin = await startOrigin({ port: 0 });
  cleanups.push(() => origin.close());
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const hooks = [{ url: `${receiver.url}/hooks/json`, secretVar: "ALERT_WEBHOOK_SECRET_TEST" }];
  const start = () => startEdge({ vars: { ...VARS, ALERT_WEBHOOKS: JSON.stringify(hooks) }, originUrl: origin.url, persistTo: dir, port });
  let edge = await start();
  await burst(edge);
  // The firing alert failed at least once and waits for its retry.
  const failed = await eventually(async () => {
    const r = await edge.api("GET", "/api/alerts/webhooks");
    return r.json?.pending?.find((d) => d.state === "firing" && d.attempts >= 1 && d.status === 503) ?? null;
  });
  assert.ok(failed, "a failed delivery waits in the outbox");
  await edge.close();
  const before = receiver.got.filter((g) => g.id === failed.id).length;
  accepting = true;
  edge = await start();
  cleanups.push(() => edge.close());
  // Only the restarted runtime can deliver now; the alarm wakes the hub.
  const delivered = await eventually(() => receiver.got.find((g) => g.id === failed.id && g.action === "ok"));
  assert.ok(delivered, "the stored delivery was sent after the restart");
  assert.ok(delivered.attempt > before, `attempt ${delivered.attempt} continues the count (${before} before the restart)`);
  assert.equal(delivered.headers["x-intel-webhook-attempt"], String(delivered.attempt));
  assert.ok(verify(delivered.headers, delivered.body, SECRET));
  const view = await eventually(async () => {
    const r = await edge.api("GET", "/api/alerts/webhooks");
    return r.json?.deliveries?.find((d) => d.id === failed.id) ?? null;
  });
  assert.equal(view.outcome, "delivered");
  assert.ok(view.attempts >= 2);
});
