// The measured numbers in the docs cannot drift: BENCHMARKS.md, the README's
// headlines and docs/SCALING.md's measured block must be exactly what
// scripts/bench-report.mjs writes from bench-results.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const check = () => {
  try {
    execFileSync(process.execPath, ["scripts/bench-report.mjs", "--check"], { encoding: "utf8", stdio: "pipe" });
    return "";
  } catch (e) {
    return `${e.stdout}${e.stderr}`;
  }
};

test("the docs' measured numbers are the ones bench-results.json holds", () => {
  assert.equal(check(), "", "a doc quotes numbers the results file does not give");
});

test("the check notices a number edited by hand", () => {
  const original = readFileSync("docs/SCALING.md", "utf8");
  const edited = original.replace(/(<!-- bench:measured -->\n[^\n]*\n- )(\d)/, (_, head, digit) => head + (digit === "9" ? "1" : "9"));
  assert.notEqual(edited, original, "the measured block has a number to edit");
  try {
    writeFileSync("docs/SCALING.md", edited);
    assert.match(check(), /docs\/SCALING\.md/);
  } finally {
    writeFileSync("docs/SCALING.md", original);
  }
});
