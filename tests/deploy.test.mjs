// The built Worker deploys: `wrangler deploy --dry-run` bundles build/ exactly
// as a real deploy would, offline, and the upload fits Cloudflare's limit on a
// Worker's compressed size (3 MiB on the free plan, 10 MiB paid). The numbers
// in BENCHMARKS.md come from the same measurement in `npm run bench`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { measureDeploy, LIMIT_FREE_BYTES, LIMIT_PAID_BYTES } from "../scripts/deploy-size.mjs";
import { recordCounts } from "./counts.mjs";

test("wrangler deploy --dry-run bundles the built Worker under the free plan's size limit", async () => {
  const d = await measureDeploy();
  const kib = (b) => (b / 1024).toFixed(1);
  console.log(
    `[deploy] upload ${d.wranglerUploadKiB} KiB, gzip ${d.wranglerGzipKiB} KiB (wrangler); ` +
      `files ${d.files.join(", ")}: ${kib(d.outdirBytes)} KiB, ${kib(d.outdirGzipBytes)} KiB gzipped; ` +
      `${((d.wranglerGzipKiB * 1024 * 100) / LIMIT_FREE_BYTES).toFixed(1)}% of the free plan's 3 MiB`,
  );
  // What is uploaded is the module wasm-bindgen wrote and its JS: the wasm is
  // in the bundle as it is in build/, not left behind.
  const wasm = readFileSync("build/index_bg.wasm");
  assert.ok(d.files.some((f) => f.endsWith(".wasm")), `no wasm module in the upload: ${d.files.join(", ")}`);
  assert.ok(d.outdirBytes >= wasm.length, "the upload is smaller than the wasm module itself");
  assert.ok(d.outdirGzipBytes >= gzipSync(wasm).length * 0.9, "the compressed upload is smaller than the compressed wasm");
  // wrangler's own figure and ours agree to within 10%.
  const ratio = (d.wranglerGzipKiB * 1024) / d.outdirGzipBytes;
  assert.ok(ratio > 0.9 && ratio < 1.1, `wrangler says ${d.wranglerGzipKiB} KiB gzipped, the files ${kib(d.outdirGzipBytes)} KiB`);
  assert.ok(d.wranglerGzipKiB * 1024 < LIMIT_FREE_BYTES, `over the free plan's 3 MiB: ${d.wranglerGzipKiB} KiB`);
  assert.ok(d.wranglerGzipKiB * 1024 < LIMIT_PAID_BYTES);
  recordCounts("deploy", { cases: 1, uploadGzipKiB: d.wranglerGzipKiB });
});
