// The measured numbers in the docs cannot drift: BENCHMARKS.md, the README's
// headlines and docs/SCALING.md's measured block must be exactly what
// scripts/bench-report.mjs writes from bench-results.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

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

test("the README's verifier snippet is the tested example's code, line for line", () => {
  const readme = readFileSync("README.md", "utf8");
  const snippet = /The Node one in \d+ lines:\n\n```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(snippet, "the README shows the Node verifier");
  const example = readFileSync("examples/node/verify.mjs", "utf8");
  const lines = snippet[1].split("\n").filter((l) => l.trim() !== "");
  for (const line of lines) assert.ok(example.includes(line), `not in examples/node/verify.mjs: ${line}`);
  assert.ok(readme.includes(`The Node one in ${lines.length} lines`), `the line count it states (${lines.length})`);
});

test("every source file and script is named in the README's layout", () => {
  const readme = readFileSync("README.md", "utf8");
  const layout = /## Layout\n\n```\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const names = (dir, ext) => readdirSync(dir).filter((f) => f.endsWith(ext) && f !== "mod.rs").map((f) => f.slice(0, -ext.length));
  for (const n of names("src/intel", ".rs")) assert.match(layout, new RegExp(`\\b${n}\\b`), `src/intel/${n}.rs`);
  for (const n of names("src/edge", ".rs")) assert.match(layout, new RegExp(`\\b${n}\\b`), `src/edge/${n}.rs`);
  for (const f of readdirSync("scripts")) assert.ok(layout.includes(f.replace(/\.(sh|mjs|md)$/, "")), `scripts/${f}`);
});
