// The dashboard in a real browser (Debian Chromium driven by playwright-core):
// a wrong token is refused, the right one opens the live page, traffic shows up
// in the feed and on the map, charts are drawn, a profile lookup shows its
// location history; no console errors and no request leaves the machine.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { startEdge, BROWSER_HEADERS, ADMIN_TOKEN } from "./harness.mjs";
import { CITIES, cfFor } from "../scripts/simulate.mjs";

let edge;
let browser;
before(async () => {
  mkdirSync("tests/artifacts", { recursive: true });
  edge = await startEdge({ vars: { RISK_MODE: "consistent", ANALYTICS_SLIDE_SECONDS: "2", ANALYTICS_WINDOW_SECONDS: "60", FLUSH_INTERVAL_MS: "200" } });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await edge?.close();
});

async function traffic() {
  const sends = [];
  CITIES.slice(0, 12).forEach((place, i) => {
    sends.push(edge.send("/products", { cf: cfFor(place), ip: `198.51.100.${150 + i}`, headers: BROWSER_HEADERS }));
  });
  sends.push(edge.send("/", { cf: { country: "T1" }, ip: "192.0.2.66", headers: BROWSER_HEADERS }));
  for (let i = 0; i < 4; i++) sends.push(edge.send("/.env", { cf: { ...cfFor(CITIES[0]), asn: 14061 }, ip: "203.0.113.150", headers: { "User-Agent": "python-requests/2.32.3" } }));
  // One visitor seen in two places: a geo jump arc on the map.
  sends.push(edge.send("/", { cf: cfFor(CITIES[2]), ip: "198.51.100.199", headers: BROWSER_HEADERS }));
  for (const r of await Promise.all(sends)) await r.arrayBuffer();
  const r = await edge.send("/cart", { cf: cfFor(CITIES[19]), ip: "198.51.100.199", headers: BROWSER_HEADERS });
  await r.arrayBuffer();
}

test("log in, watch live traffic on the feed, map and charts, look up a profile", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const consoleErrors = [];
  const foreign = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const host = new URL(edge.url).host;
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.host !== host && u.protocol !== "data:") foreign.push(req.url());
  });
  await page.goto(new URL("_intel/", edge.url).href);

  // A wrong token is refused with a visible error; the wrong attempt's 401 is expected.
  await page.fill("#token", "not-the-token");
  await page.press("#token", "Enter");
  await page.waitForSelector("#login-error:not([hidden])");
  assert.match(await page.textContent("#login-error"), /not accepted/);
  const wrongAttemptErrors = consoleErrors.length;

  await page.fill("#token", ADMIN_TOKEN);
  await page.click("#login-form button");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForSelector('#conn-intel[data-state="live"]');
  await page.waitForSelector('#conn-perf[data-state="live"]');

  await traffic();
  await page.waitForFunction(() => document.querySelectorAll("#feed li").length >= 10, null, { timeout: 15000 });
  const feedText = await page.textContent("#feed");
  assert.match(feedText, /location update/);
  assert.match(feedText, /threat detected/);
  await page.waitForFunction(() => Number(document.getElementById("map").dataset.points) >= 10, null, { timeout: 10000 });
  await page.waitForFunction(() => Number(document.getElementById("map").dataset.arcs) >= 1, null, { timeout: 10000 });
  // Charts drawn with data once the analytics window has slides.
  await page.waitForFunction(() => document.querySelectorAll(".chart canvas").length === 4, null, { timeout: 10000 });
  await page.waitForFunction(() => Number(document.getElementById("k-requests").textContent.replace(/\D/g, "")) >= 15, null, { timeout: 20000 });

  // Profile lookup with location history (London then Sydney).
  await page.fill("#lookup-ip", "198.51.100.199");
  await page.press("#lookup-ip", "Enter");
  await page.waitForFunction(() => {
    const t = document.querySelector("#profile .history")?.textContent ?? "";
    return /London/.test(t) && /Sydney/.test(t);
  }, null, { timeout: 10000 });
  assert.ok((await page.locator("#profile .history tbody tr").count()) >= 2, "two places in the history");
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: "tests/artifacts/dashboard-1280x800.png", fullPage: false });
  await page.screenshot({ path: "tests/artifacts/dashboard-full.png", fullPage: true });

  // Keyboard: the filter form is reachable and applies with Enter.
  await page.focus("#f-country");
  await page.keyboard.type("GB");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => [...document.querySelectorAll("#feed li")].length > 0);

  // Phone width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: "tests/artifacts/dashboard-390x844.png", fullPage: false });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling at phone width (${overflow} px)`);

  const unexpected = consoleErrors.slice(wrongAttemptErrors).concat(consoleErrors.slice(0, wrongAttemptErrors).filter((e) => !/401/.test(e)));
  assert.deepEqual(unexpected, [], "no console errors");
  assert.deepEqual(foreign, [], "no request leaves the local runtime");
  await page.close();
});
