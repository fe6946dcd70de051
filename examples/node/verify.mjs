// Verifies edgeintel's X-Intel-Signature at the origin (Node 18+, no
// dependencies). Use `verify()` anywhere, or `expressMiddleware()` in Express.
import { createHmac, timingSafeEqual } from "node:crypto";

// The headers edgeintel signs, in the order it sets them.
const ORDER = ["x-risk-score", "x-risk-level", "x-risk-reasons", "x-threat-score", "x-reputation-score",
  "x-geo-country", "x-geo-city", "x-geo-region", "x-geo-lat", "x-geo-lon", "x-geo-asn", "x-geo-colo",
  "x-intel-status", "x-intel", "x-intel-client-ip"];

/** true when `headers` (lower-case names) carry a valid, fresh signature for method + url. */
export function verify({ method, url, headers, key, maxAgeSeconds = 300, now = Date.now() }) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(headers["x-intel-signature"] ?? "");
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(now / 1000 - t) > maxAgeSeconds) return false;
  let canonical = `${method}\n${url}\n${t}\n`;
  for (const name of ORDER) if (headers[name] !== undefined) canonical += `${name}:${headers[name]}\n`;
  const expected = createHmac("sha256", key).update(canonical).digest();
  return timingSafeEqual(expected, Buffer.from(m[2], "hex"));
}

/** Express middleware: 401 unless the request came through edgeintel. */
export function expressMiddleware({ key, maxAgeSeconds = 300, scheme = "https" }) {
  return (req, res, next) => {
    const url = `${req.protocol ?? scheme}://${req.headers.host}${req.originalUrl ?? req.url}`;
    if (verify({ method: req.method, url, headers: req.headers, key, maxAgeSeconds })) return next();
    res.status(401).send("missing or invalid X-Intel-Signature");
  };
}
