// Client fingerprints (issue 19, part 3; docs/enforcement.md "Client
// fingerprints"), in the local runtime: the origin's X-Intel carries
// fp="<16 hex>" from the connection's TLS facts in request.cf and the names of
// the request's headers. Two clients with different TLS stacks get two
// fingerprints; the same stack with another header set gets another; the
// same client again gets the same one, whatever its cookies or its address;
// a request without TLS facts gets none. The client cannot choose it by
// sending its own X-Intel (it is replaced).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdge, BROWSER_HEADERS } from "./harness.mjs";

// Values in the shape Cloudflare sends (base64 SHA-1s, a length).
const CHROME_TLS = {
  tlsClientCiphersSha1: "kXrN3VEKDdzz2cPKTQaKzpxVTxQ=",
  tlsClientExtensionsSha1: "1eY97BUYYO8vDaTfHQywB1pcNdM=",
  tlsClientHelloLength: "508",
  tlsVersion: "TLSv1.3",
  httpProtocol: "HTTP/2",
};
const CURL_TLS = {
  tlsClientCiphersSha1: "JZtiTn8H/ntxORk+XXvU2EvNoz8=",
  tlsClientExtensionsSha1: "Y7DIC8A6G0/aXviZ8ie/xDbJb7g=",
  tlsClientHelloLength: "1605",
  tlsVersion: "TLSv1.3",
  httpProtocol: "HTTP/1.1",
};
const DE = { country: "DE", asn: 3320, continent: "EU" };
// A browser's header set: client hints a library does not send. (Node's
// fetch adds accept, accept-language, accept-encoding and sec-fetch-mode to
// every request here, so those are in every set below.)
const CHROME_HEADERS = {
  ...BROWSER_HEADERS,
  "Sec-Ch-Ua": '"Chromium";v="131", "Not_A Brand";v="24"',
  "Sec-Ch-Ua-Mobile": "?0",
  "Upgrade-Insecure-Requests": "1",
};

let edge;
before(async () => {
  edge = await startEdge({ vars: {} });
});
after(async () => {
  await edge?.close();
});

/** The fp member of the X-Intel the origin got, or null when it has none. */
async function fp({ ip = "198.51.100.90", cf, headers = CHROME_HEADERS }) {
  const before = edge.origin.requests.length;
  const res = await edge.send("/page", { ip, cf, headers });
  await res.arrayBuffer();
  assert.equal(res.status, 200);
  assert.ok(edge.origin.requests.length > before, "forwarded");
  const intel = edge.origin.requests.at(-1).headers["x-intel"];
  const m = /(?:^|, )fp="([^"]*)"/.exec(intel);
  return m ? m[1] : null;
}

test("two TLS stacks give two fingerprints; the same stack again gives the same one", async () => {
  const chrome = await fp({ cf: { ...DE, ...CHROME_TLS } });
  assert.match(chrome, /^[0-9a-f]{16}$/);
  const curl = await fp({ cf: { ...DE, ...CURL_TLS }, headers: { "User-Agent": "curl/8.5.0", Accept: "*/*" } });
  assert.match(curl, /^[0-9a-f]{16}$/);
  assert.notEqual(chrome, curl);
  // The same browser from another address and network, now with a cookie and
  // a Referer: the same fingerprint (it names software, not a person or a place).
  const again = await fp({
    ip: "2001:db8:7::5",
    cf: { country: "FR", asn: 12322, continent: "EU", ...CHROME_TLS },
    headers: { ...CHROME_HEADERS, Cookie: "session=abc", Referer: "https://example.com/" },
  });
  assert.equal(again, chrome);
});

test("the header set is part of it; a client's own X-Intel does not choose it; no TLS facts, no fingerprint", async () => {
  const chrome = await fp({ cf: { ...DE, ...CHROME_TLS } });
  // A library that copied the browser's TLS hashes and User-Agent but not its client hints.
  const copied = await fp({ cf: { ...DE, ...CHROME_TLS }, headers: BROWSER_HEADERS });
  assert.notEqual(copied, chrome);
  const forged = await fp({ cf: { ...DE, ...CURL_TLS }, headers: { ...CHROME_HEADERS, "X-Intel": `fp="${chrome}"` } });
  assert.notEqual(forged, chrome);
  assert.equal(await fp({ cf: DE }), null, "plain HTTP or a runtime without the TLS fields");
  // JA4 (Bot Management) alone is enough.
  assert.match(await fp({ cf: { ...DE, botManagement: { ja4: "t13d1516h2_8daaf6152771_02713d6af862" } } }), /^[0-9a-f]{16}$/);
});
