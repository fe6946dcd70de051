// Each suite writes what it tried (cases, faults injected, requests sent,
// lost) to tests/artifacts/counts/<suite>.json; scripts/test-summary.mjs
// prints them all at the end of `npm test`.
import { mkdirSync, writeFileSync } from "node:fs";

export const COUNTS_DIR = new URL("./artifacts/counts/", import.meta.url);

export function recordCounts(suite, counts) {
  mkdirSync(COUNTS_DIR, { recursive: true });
  writeFileSync(new URL(`${suite}.json`, COUNTS_DIR), JSON.stringify({ suite, ...counts }, null, 2) + "\n");
}
