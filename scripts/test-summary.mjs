// Prints what the test run tried, from the counts each suite wrote to
// tests/artifacts/counts/ (cases, faults injected, requests sent, lost).
// Called at the end of scripts/test.sh; only counts from this run are shown.
import { readdirSync, readFileSync, statSync } from "node:fs";

const dir = new URL("../tests/artifacts/counts/", import.meta.url);
const since = Number(process.argv[2] ?? 0) * 1000;
let files = [];
try {
  files = readdirSync(dir).filter((f) => f.endsWith(".json") && statSync(new URL(f, dir)).mtimeMs >= since);
} catch {}
const rows = files.sort().map((f) => JSON.parse(readFileSync(new URL(f, dir), "utf8")));
const totals = { cases: 0, faults: 0, requests: 0, lost: 0 };
console.log("\n=== what this run tried");
for (const { suite, ...c } of rows) {
  console.log(`  ${suite.padEnd(12)} ${Object.entries(c).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ")}`);
  totals.cases += (c.cases ?? 0) + (c.badInputCases ?? 0) + (c.runs ?? 0);
  totals.faults += c.faultsInjected ?? 0;
  totals.requests += c.requests ?? 0;
  totals.lost += c.lost ?? 0;
}
console.log(
  `  ${"total".padEnd(12)} cases tried=${totals.cases}  faults injected=${totals.faults}  requests sent=${totals.requests}  lost=${totals.lost}`,
);
if (totals.lost !== 0) process.exitCode = 1;
