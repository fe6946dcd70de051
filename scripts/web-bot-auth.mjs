// A Web Bot Auth agent for the demo and the tests (docs/enforcement.md,
// "Signed agents"): an Ed25519 key from node:crypto, the key directory an
// agent publishes on its own origin, and requests signed as HTTP Message
// Signatures (RFC 9421) with the `web-bot-auth` tag. `npm start`'s simulator
// signs its "signed-agent" persona with it; tests/signed_agents.test.mjs
// signs valid and tampered requests with it.
import http from "node:http";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";

export const DIRECTORY_PATH = "/.well-known/http-message-signatures-directory";

/** A new Ed25519 key pair (node:crypto KeyObjects). */
export const newAgentKey = () => generateKeyPairSync("ed25519");

/** The public key as a JWK (`{ crv, kty, x }`). */
export const publicJwk = (key) => key.publicKey.export({ format: "jwk" });

/** The key's id: its JWK SHA-256 thumbprint (RFC 7638), base64url. */
export const thumbprint = (key) =>
  createHash("sha256").update(`{"crv":"Ed25519","kty":"OKP","x":"${publicJwk(key).x}"}`).digest("base64url");

/**
 * A local agent origin publishing `jwks` at the well-known path; `hits`
 * counts every request it got.
 */
export async function startKeyDirectory(jwks, { host = "127.0.0.1", port = 0 } = {}) {
  const hits = { count: 0 };
  const server = http.createServer((req, res) => {
    hits.count++;
    if (req.url !== DIRECTORY_PATH) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/http-message-signatures-directory+json" });
    res.end(JSON.stringify({ keys: jwks }));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { origin: `http://${host}:${server.address().port}`, hits, close: () => new Promise((r) => server.close(r)) };
}

/**
 * The headers of a request signed as Web Bot Auth: `@authority` and
 * `signature-agent` covered, and `@path` when `path` is given. `authority`
 * is the host (and port) the request goes to, as the Worker sees its URL.
 */
export function signedHeaders({
  key,
  agentOrigin,
  authority,
  path,
  created = Math.floor(Date.now() / 1000) - 5,
  expires = created + 60,
  nonce = randomBytes(16).toString("base64"),
}) {
  const agentHeader = `"${agentOrigin}"`;
  const components = path ? ["@authority", "@path", "signature-agent"] : ["@authority", "signature-agent"];
  const params = `(${components.map((c) => `"${c}"`).join(" ")});created=${created};expires=${expires};keyid="${thumbprint(key)}";alg="ed25519";nonce="${nonce}";tag="web-bot-auth"`;
  const lines = components.map((c) => `"${c}": ${c === "@authority" ? authority : c === "@path" ? path : agentHeader}`);
  const base = [...lines, `"@signature-params": ${params}`].join("\n");
  const signature = sign(null, Buffer.from(base), key.privateKey).toString("base64");
  return { "Signature-Agent": agentHeader, "Signature-Input": `sig1=${params}`, Signature: `sig1=:${signature}:` };
}
