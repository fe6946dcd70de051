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

test("the check notices an edit in docs/SCALING.md's generated model and extrapolation", () => {
  const original = readFileSync("docs/SCALING.md", "utf8");
  const block = /<!-- bench:scale -->\n([\s\S]*?)<!-- \/bench:scale -->/.exec(original);
  assert.ok(block, "docs/SCALING.md has the bench:scale block");
  // A digit changed if the block has numbers (a measured run), a word otherwise.
  const body = block[1];
  const editedBody = /\d/.test(body) ? body.replace(/\d/, (d) => (d === "9" ? "1" : "9")) : body.replace(/\w+/, "edited");
  const edited = original.replace(body, editedBody);
  assert.notEqual(edited, original);
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

// Issue 16: no import circles in src/. Every `crate::`, `super::` and
// `self::` path outside tests and comments is an edge from its file's
// module to the longest module it names; the graph must have no cycle.
test("src/ has no import circles between modules", () => {
  const mods = new Map();
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".rs")) {
        let parts = p.slice(4, -3).split("/");
        if (["mod", "lib", "main"].includes(parts.at(-1))) parts = parts.slice(0, -1);
        mods.set(parts.join("::"), p);
      }
    }
  };
  walk("src");
  const resolve = (cur, path) => {
    let parts = path.split("::");
    let base = cur ? cur.split("::") : [];
    if (parts[0] === "crate") { base = []; parts = parts.slice(1); }
    else if (parts[0] === "self") parts = parts.slice(1);
    else while (parts[0] === "super") { base = base.slice(0, -1); parts = parts.slice(1); }
    const cand = [...base, ...parts];
    for (let k = cand.length; k > 0; k--) {
      const m = cand.slice(0, k).join("::");
      if (mods.has(m)) return m;
    }
    return null;
  };
  const edges = new Map();
  for (const [m, p] of mods) {
    let src = readFileSync(p, "utf8").replace(/#\[cfg\(test\)\][\s\S]*$/, "").replace(/\/\/[^\n]*/g, "");
    // Grouped imports, innermost first: `super::{a, b::{c, d}}` -> `super::a, super::b::c, super::b::d`.
    for (let before = ""; before !== src; ) {
      before = src;
      src = src.replace(/(\w+(?:::\w+)*)::\{([^{}]*)\}/g, (_, head, items) =>
        items.split(",").map((i) => i.trim()).filter(Boolean).map((i) => (i === "self" ? head : `${head}::${i}`)).join(", "));
    }
    const out = new Set();
    for (const [path] of src.matchAll(/\b(?:crate|super|self)(?:::\w+)+/g)) {
      const t = resolve(m, path);
      if (t && t !== m && !m.startsWith(`${t}::`) && !t.startsWith(`${m}::`)) out.add(t);
    }
    edges.set(m, out);
  }
  // Depth-first search for a back edge.
  const state = new Map();
  const stack = [];
  const visit = (m) => {
    state.set(m, "open");
    stack.push(m);
    for (const t of edges.get(m)) {
      if (state.get(t) === "open") assert.fail(`import circle: ${[...stack.slice(stack.indexOf(t)), t].join(" -> ")}`);
      if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(m, "done");
  };
  for (const m of mods.keys()) if (!state.has(m)) visit(m);
  assert.ok(mods.size > 50, `read ${mods.size} modules`);
});
