// The measured numbers in the docs cannot drift: BENCHMARKS.md and
// docs/SCALING.md's measured block must be exactly what
// scripts/bench-report.mjs writes from bench-results.json. The README stays
// short (at most 200 lines) and its map of docs/ stays complete.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";

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

test("docs/api.md's verifier snippet is the tested example's code, line for line", () => {
  const doc = readFileSync("docs/api.md", "utf8");
  const snippet = /The Node one in \d+ lines:\n\n```js\n([\s\S]*?)```/.exec(doc);
  assert.ok(snippet, "docs/api.md shows the Node verifier");
  const example = readFileSync("examples/node/verify.mjs", "utf8");
  const lines = snippet[1].split("\n").filter((l) => l.trim() !== "");
  for (const line of lines) assert.ok(example.includes(line), `not in examples/node/verify.mjs: ${line}`);
  assert.ok(doc.includes(`The Node one in ${lines.length} lines`), `the line count it states (${lines.length})`);
});

test("every source file and script is named in docs/architecture.md's layout", () => {
  const doc = readFileSync("docs/architecture.md", "utf8");
  const layout = /## Layout\n\n```\n([\s\S]*?)```/.exec(doc)?.[1] ?? "";
  const names = (dir, ext) => readdirSync(dir).filter((f) => f.endsWith(ext) && f !== "mod.rs").map((f) => f.slice(0, -ext.length));
  for (const n of names("src/intel", ".rs")) assert.match(layout, new RegExp(`\\b${n}\\b`), `src/intel/${n}.rs`);
  for (const n of names("src/edge", ".rs")) assert.match(layout, new RegExp(`\\b${n}\\b`), `src/edge/${n}.rs`);
  // The API's files are named in their own entry (its line and the indented ones after it).
  const api = /^src\/edge\/api\/ .*\n(?: {3,}.*\n)*/m.exec(layout)?.[0] ?? "";
  assert.ok(api, "the layout has an entry for src/edge/api/");
  for (const n of names("src/edge/api", ".rs")) assert.match(api, new RegExp(`\\b${n}\\b`), `src/edge/api/${n}.rs`);
  for (const f of readdirSync("scripts")) assert.ok(layout.includes(f.replace(/\.(sh|mjs|md)$/, "")), `scripts/${f}`);
});

test("the README has at most 200 lines", () => {
  const lines = readFileSync("README.md", "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  assert.ok(lines.length <= 200, `README.md has ${lines.length} lines`);
});

test("the README links every docs/*.md file, and every such link resolves", () => {
  const readme = readFileSync("README.md", "utf8");
  const linked = new Set([...readme.matchAll(/\]\((docs\/[^)#\s]+\.md)(#[^)\s]*)?\)/g)].map((m) => m[1]));
  assert.ok(linked.size > 0, "the README links into docs/");
  for (const link of linked) assert.ok(existsSync(link), `README.md links ${link}, which does not exist`);
  for (const f of readdirSync("docs").filter((f) => f.endsWith(".md"))) {
    assert.ok(linked.has(`docs/${f}`), `docs/${f} is not linked from README.md`);
  }
});
