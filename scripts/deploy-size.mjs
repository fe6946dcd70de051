// What `wrangler deploy` would upload, measured offline: `wrangler deploy
// --dry-run --outdir <tmp>` bundles the built Worker (build/index.js and its
// wasm) exactly as a deploy does and stops before anything leaves the machine.
// Used by tests/deploy.test.mjs (asserts the limit) and by the bench's bundle
// step (records the numbers for BENCHMARKS.md).
//
// The limit is Cloudflare's on the Worker's compressed size: 3 MiB on the
// free plan, 10 MiB on the paid plans. The dashboard in www/ is uploaded as
// static assets, which are not part of that size.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

export const LIMIT_FREE_BYTES = 3 * 1024 * 1024;
export const LIMIT_PAID_BYTES = 10 * 1024 * 1024;

/** Runs the dry run; resolves to the sizes, or rejects with wrangler's output. */
export async function measureDeploy({ cwd = process.cwd(), timeoutMs = 120_000 } = {}) {
  const outdir = mkdtempSync(join(tmpdir(), "edgeintel-deploy-"));
  try {
    const output = await new Promise((resolve, reject) => {
      execFile(
        join(cwd, "node_modules/.bin/wrangler"),
        ["deploy", "--dry-run", "--outdir", outdir],
        {
          cwd,
          timeout: timeoutMs,
          // Offline and quiet: no telemetry, no update check, no account.
          env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_UPDATE_NOTIFIER: "1" },
          maxBuffer: 8 * 1024 * 1024,
        },
        (err, stdout, stderr) => {
          const text = `${stdout}\n${stderr}`;
          if (err) reject(new Error(`wrangler deploy --dry-run failed (${err.message}):\n${text}`));
          else resolve(text);
        },
      );
    });
    // "Total Upload: 1012.34 KiB / gzip: 402.11 KiB"
    const m = output.match(/Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/);
    if (!m) throw new Error(`no "Total Upload" line in wrangler's output:\n${output}`);
    const files = readdirSync(outdir, { recursive: true })
      .map((f) => join(outdir, String(f)))
      // The modules a deploy uploads; the dry run also writes a README and a
      // source map, which are not uploaded (no upload_source_maps).
      .filter((f) => statSync(f).isFile() && /\.(m?js|wasm)$/.test(f));
    const bytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
    const gzipBytes = files.reduce((sum, f) => sum + gzipSync(readFileSync(f)).length, 0);
    return {
      wranglerUploadKiB: Number(m[1]),
      wranglerGzipKiB: Number(m[2]),
      files: files.map((f) => f.slice(outdir.length + 1)).sort(),
      outdirBytes: bytes,
      outdirGzipBytes: gzipBytes,
      limitFreeBytes: LIMIT_FREE_BYTES,
      limitPaidBytes: LIMIT_PAID_BYTES,
      output,
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}
