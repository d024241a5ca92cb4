// Verifies JWTs against a JWKS document with the `jose` library.
//
// stdin: {"jwks": {...}, "tokens": [{"token": "...", "at_ms": 1700000000000}, ...]}
// stdout: one result per token, in order:
//   {"ok": true, "header": {...}, "payload": {...}} or {"ok": false, "error": "..."}
// Each token is verified as of `at_ms` (signature, alg from the JWKS, nbf and exp).
import { createLocalJWKSet, jwtVerify } from "jose";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const keys = createLocalJWKSet(input.jwks);

const results = [];
for (const { token, at_ms } of input.tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      currentDate: new Date(at_ms),
      clockTolerance: 0,
    });
    results.push({ ok: true, header: protectedHeader, payload });
  } catch (e) {
    results.push({ ok: false, error: `${e.code ?? e.name}: ${e.message}` });
  }
}
process.stdout.write(JSON.stringify(results));
